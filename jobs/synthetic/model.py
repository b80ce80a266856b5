"""The hidden ground-truth engagement model.

For a logged impression of tweet t by user u at time τ, every action a is an independent
Bernoulli draw with

    p_a = sigmoid( b_a
                   + w_a,interest   * interest_u(topic_t)          true interest match, in [0, 1]
                   + w_a,follows    * [u follows author(t) at τ]
                   + w_a,community  * [home(u) == home(author(t))]
                   + w_a,past       * [u replied to / quoted / retweeted author(t) before τ]
                   + w_a,quality    * quality_t                     latent, ~N(skill_author, 1)
                   + w_a,age        * log(1 + age of t at τ in hours)
                   + w_a,nsfw       * [t is NSFW and u did not opt in]
                   + w_a,media      * has_media_t
                   + w_a,propensity * propensity_u )                per-user engagement offset

video_playback50 is possible only on tweets with video (p = 0 otherwise). Negative feedback
(not_interested, report) falls with interest, affinity and quality and rises sharply for NSFW
shown to viewers who did not opt in. The coefficients are data (`COEFFICIENTS`) and are written
to the truth metadata.
"""

from __future__ import annotations

import numpy as np

from core.contract import ENGAGEMENT_ACTIONS

ACTIONS = tuple(a for a in ENGAGEMENT_ACTIONS if a != "impression")
FEATURES = (
    "interest",
    "follows",
    "community",
    "past",
    "quality",
    "log_age_h",
    "nsfw_unwanted",
    "has_media",
    "propensity",
)

# action: (bias, interest, follows, community, past, quality, log_age_h, nsfw_unwanted,
#          has_media, propensity)
COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "click": (-5.6, 2.0, 0.4, 0.2, 0.6, 0.35, -0.10, 0.3, 0.8, 1.0),
    "like": (-6.7, 3.2, 0.9, 0.3, 1.0, 0.60, -0.20, -0.5, 0.2, 1.0),
    "retweet": (-8.1, 2.6, 0.8, 0.3, 1.2, 0.70, -0.25, -1.0, 0.2, 1.0),
    "reply": (-8.2, 2.2, 0.9, 0.4, 1.5, 0.30, -0.30, -0.5, 0.0, 1.0),
    "quote": (-9.5, 2.2, 0.6, 0.3, 1.0, 0.50, -0.25, -1.0, 0.0, 1.0),
    "profile_click": (-6.3, 1.5, -0.9, 0.3, 0.2, 0.30, -0.10, 0.5, 0.0, 0.7),
    "video_playback50": (-2.4, 2.0, 0.4, 0.2, 0.3, 0.40, -0.10, 0.0, 0.0, 0.6),
    "bookmark": (-8.4, 2.6, 0.3, 0.2, 0.5, 0.70, -0.15, -1.0, 0.3, 0.8),
    "share": (-8.8, 2.2, 0.3, 0.3, 0.5, 0.60, -0.15, -1.0, 0.3, 0.8),
    "not_interested": (-4.6, -3.0, -0.8, -0.5, -0.8, -0.40, 0.05, 2.5, 0.0, 0.0),
    "report": (-7.5, -2.0, -1.0, -0.5, -1.0, -0.80, 0.00, 3.5, 0.0, 0.0),
}

# Median seconds from the impression to the action (lognormal, sigma 1).
DELAY_MEDIAN_S = {
    "click": 3.0,
    "like": 8.0,
    "retweet": 15.0,
    "reply": 45.0,
    "quote": 60.0,
    "profile_click": 6.0,
    "video_playback50": 12.0,
    "bookmark": 20.0,
    "share": 25.0,
    "not_interested": 4.0,
    "report": 30.0,
}


def probabilities(features: dict[str, np.ndarray], has_video: np.ndarray) -> dict[str, np.ndarray]:
    """True per-action probabilities (float32) of each impression row."""
    out = {}
    for action in ACTIONS:
        coef = COEFFICIENTS[action]
        logit = np.full(len(has_video), coef[0], dtype=np.float64)
        for w, name in zip(coef[1:], FEATURES):
            if w:
                logit += w * features[name]
        p = 1.0 / (1.0 + np.exp(-logit))
        if action == "video_playback50":
            p = np.where(has_video, p, 0.0)
        out[action] = p.astype(np.float32)
    return out


def impression_dwell_ms(rng: np.random.Generator, interest: np.ndarray, quality: np.ndarray):
    """How long the tweet stayed on screen: longer when it interests the viewer."""
    mu = np.log(1200.0) + 0.8 * interest + 0.2 * quality
    return np.clip(np.exp(rng.normal(mu, 0.9)), 50, 600_000).astype(np.int32)


# Click dwell: lognormal, log-median log(15 s) + 0.5 interest + 0.3 quality, sigma 1.
CLICK_DWELL_MEDIAN_MS, CLICK_DWELL_INTEREST, CLICK_DWELL_QUALITY, CLICK_DWELL_SIGMA = 15_000.0, 0.5, 0.3, 1.0


def click_dwell_log_mean(interest: np.ndarray, quality: np.ndarray) -> np.ndarray:
    return np.log(CLICK_DWELL_MEDIAN_MS) + CLICK_DWELL_INTEREST * interest + CLICK_DWELL_QUALITY * quality


def click_dwell_ms(rng: np.random.Generator, interest: np.ndarray, quality: np.ndarray):
    """Time spent on the tweet's detail page after a click."""
    mu = click_dwell_log_mean(interest, quality)
    return np.clip(np.exp(rng.normal(mu, CLICK_DWELL_SIGMA)), 200, 3_600_000).astype(np.int32)


def model_json() -> dict:
    return {
        "form": "p_a = sigmoid(bias_a + sum_f w_a,f * x_f); actions drawn independently",
        "features": {
            "interest": "true interest weight of the viewer in the tweet's topic (0..1)",
            "follows": "viewer follows the author at impression time (0/1)",
            "community": "viewer's home community == author's home community (0/1)",
            "past": "viewer replied to / quoted / retweeted the author before (0/1)",
            "quality": "latent tweet quality (truth/tweets quality)",
            "log_age_h": "log(1 + tweet age at impression in hours)",
            "nsfw_unwanted": "tweet is NSFW and viewer has allow_nsfw = false (0/1)",
            "has_media": "tweet has media (0/1)",
            "propensity": "per-user engagement offset (truth/users propensity)",
        },
        "coefficients": {a: dict(zip(("bias",) + FEATURES, COEFFICIENTS[a])) for a in ACTIONS},
        "video_playback50": "probability 0 unless has_video",
        "delay_median_s": DELAY_MEDIAN_S,
        "delay": "action time = impression time + lognormal(log(median), 1) seconds",
    }
