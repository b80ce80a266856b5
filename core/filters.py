"""Every filter's identifier, one name from the batch through serving, its metrics and the explain page.

The batch applies the viewer-level ones while it retrieves candidates (`CANDIDATE_FILTERS`); serving
applies all of them again at request time, on state newer than the build (`REQUEST_FILTERS`, in the
order they apply), and the chronological timelines a subset (`CHRONOLOGICAL_FILTERS`).
"""

SELF = "self"  # the viewer's own tweets
BLOCKED_MUTED = "blocked_muted"  # authors the viewer blocked or muted
SEEN = "seen"  # tweets the viewer already had an impression of
FEEDBACK_FATIGUE = "feedback_fatigue"  # authors the viewer said "not interested" in, recently
DELETED = "deleted"  # tweets deleted since the build
NSFW = "nsfw"  # sensitive media the viewer opted out of
DUPLICATE = "duplicate"  # a tweet already on the page (or an earlier page)

CANDIDATE_FILTERS: tuple[str, ...] = (SELF, BLOCKED_MUTED, SEEN)  # cheapest first
# Not a filter: a candidate that passed every filter but fell beyond the per-user cap.
TOTAL_CAP = "total_cap"
REQUEST_FILTERS: tuple[str, ...] = (SELF, BLOCKED_MUTED, SEEN, FEEDBACK_FATIGUE, DELETED, NSFW, DUPLICATE)
CHRONOLOGICAL_FILTERS: tuple[str, ...] = (BLOCKED_MUTED, DELETED, NSFW)
