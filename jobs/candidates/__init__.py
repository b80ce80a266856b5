"""Candidate generation for the For You timeline: six sources merged into one pool per user.

After Home Mixer's For You candidate pipelines (twitter/the-algorithm `home-mixer`), computed in
batch at build time T for every user; the sources are `core.sources.CANDIDATE_SOURCES`:

| source | Home Mixer counterpart | retrieves |
|---|---|---|
| `in_network` | Earlybird in-network | recent tweets of followed accounts, RealGraph weight x recency |
| `uteg` | UserTweetEntityGraph | tweets the user's strongest followees engaged with |
| `simclusters` | SimClusters ANN (cr-mixer) | tweets of the user's InterestedIn communities |
| `twhin` | TwHIN ANN (cr-mixer) | nearest tweets to the user's TwHIN vector (exact here) |
| `frs` | FRS-based tweets | recent tweets of accounts recommended by the two-hop expansion |
| `popular` | cold-start backfill | the most engaged recent tweets, global and per community |

Shape of the job, as a batch of Home Mixer requests, one module per step:

1. `requests.tweet_pool`: tweets created in [T - freshness, T], not deleted at or before T. Every
   source retrieves from it (tweet-level eligibility: stale, future and deleted tweets never enter).
2. `indexes.collect_indexes` (driver): the candidate stores, small enough to ship to every task:
   author -> pool tweets (in_network, frs), engager -> engaged tweets (uteg), cluster -> tweets
   (simclusters), community -> popular tweets (popular), the pool's TwHIN matrix (twhin).
3. `requests.candidate_requests` (Spark): one row per user with the query-side inputs: followed
   accounts and their RealGraph weights, two-hop accounts, InterestedIn clusters, the TwHIN vector,
   blocked and muted accounts, tweets already seen.
4. `pipeline.tagged_candidates`: one `mapInArrow` over the requests, per block of users
   (`blocks.RequestBlock`): every source (`sources.retrieve_block`), then `merge.merge_block`: one
   row per (user, tweet) keeping every source, the viewer filters (`filters`: `core.filters`'
   CANDIDATE_FILTERS), the interleaved total cap. Nothing is shuffled after the requests are built:
   the pool of ~1,000 candidates per user never leaves the task that computes it until it is written.
5. `pipeline.select_candidates`: the kept rows as the table; `metrics` counts them on the way.

Spark code builds the requests and the indexes; numpy (`kernels`, `sparse`; torch for the TwHIN
matrix product) runs the per-user pipeline. Defaults live in `config.CandidatesConfig`;
docs/candidates.md describes the table and the measurements.
"""
