"""The candidate sources of the batch retrieval, in the order of their bits in a published feed item
(`core.redis_layout.FEED_COLUMNS`' `sources`) and of their columns in the candidates table.

in_network: recent tweets of followed accounts; uteg: tweets engaged by the accounts a user
engages with (UTEG); simclusters: popular tweets of the user's communities; twhin: nearest tweets
in the TwHIN embedding space; frs: tweets of accounts recommended to follow; popular: global
popularity, the fallback.
"""

CANDIDATE_SOURCES: tuple[str, ...] = ("in_network", "uteg", "simclusters", "twhin", "frs", "popular")
# Candidates injected at request time (fresh in-network tweets) carry one more bit, after these.
FRESH_SOURCE = "fresh"
