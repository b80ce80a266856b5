"""The explain page (`GET /debug/users/{id}/for_you`): one For You page as the pipeline built it, as a
self-contained HTML document (inline styles, no scripts, every value escaped)."""

from __future__ import annotations

from html import escape

from core.filters import REQUEST_FILTERS
from core.heads import HEADS
from core.sources import FRESH_SOURCE
from serving.candidates import Candidate
from serving.for_you import ForYouResult

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#0f1419}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e6ecf0;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f7f9f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#00875a}.down{color:#c0392b}.tag{display:inline-block;background:#e8f5fd;border-radius:4px;padding:0 4px;
margin:1px}.module{background:#fffbe6}.promoted{background:#f3f0ff}.fallback{color:#c0392b;font-weight:600}
"""


def _rank_change(candidate: Candidate, position: int) -> str:
    if not candidate.batch_rank:
        return "new" if FRESH_SOURCE in candidate.sources else "–"
    moved = candidate.batch_rank - position
    css = "up" if moved > 0 else "down" if moved < 0 else ""
    return f'<span class="{css}">{candidate.batch_rank} → {position} ({moved:+d})</span>'


def _tweet_row(position: int, kind: str, candidate: Candidate, item: dict, css: str = "") -> str:
    heads = "".join(
        f'<td class="num">{candidate.probabilities[h]:.3f}</td>' if h in candidate.probabilities else "<td></td>"
        for h in HEADS
    )
    sources = "".join(f'<span class="tag">{escape(s)}</span>' for s in candidate.sources)
    proof = ", ".join(str(u) for u in candidate.social_proof_user_ids[:5])
    context = "<br><small>" + escape(item["social_context"]) + "</small>" if item["social_context"] else ""
    return (
        f'<tr class="{css}"><td class="num">{position}</td><td>{escape(kind)}</td>'
        f"<td>{candidate.tweet_id}</td><td>@{escape(item['author']['handle'] or str(candidate.author_id))}</td>"
        f"<td>{escape((item['text'] or '')[:80])}</td><td>{sources}</td><td>{escape(proof)}{context}</td>"
        f'<td class="num">{candidate.score:.4f}</td><td>{_rank_change(candidate, position)}</td>{heads}</tr>'
    )


def explain_page(*, user_id: int, version: int, result: ForYouResult, items: list, handle: str | None) -> str:
    rows = []
    position = 0
    for entry, item in zip(result.entries, items):
        if entry.type == "who_to_follow":
            position += 1
            users = ", ".join(
                f"@{escape(u['handle'] or u['user_id'])} ({u['social_proof_count']} in common)" for u in item["users"]
            )
            rows.append(
                f'<tr class="module"><td class="num">{position}</td><td>who_to_follow</td>'
                f'<td colspan="{7 + len(HEADS)}">{users}</td></tr>'
            )
            continue
        tweets = item["tweets"] if entry.type == "conversation" else [item]
        position += 1
        for depth, ((candidate, _), tweet_item) in enumerate(zip(entry.tweets, tweets)):
            last = depth == len(entry.tweets) - 1
            kind = (
                entry.type
                if entry.type != "conversation"
                else ("conversation: reply" if last else "conversation: ancestor")
            )
            css = "promoted" if entry.type == "promoted" else "module" if entry.type == "conversation" else ""
            rows.append(_tweet_row(position, kind, candidate, tweet_item, css))
    head_cells = "".join(f"<th>p({h})</th>" for h in HEADS)
    feed = result.feed
    authors = dict(zip(feed["tweet_id"].tolist(), feed["author_id"].tolist())) if feed is not None else {}
    ranks = dict(zip(feed["tweet_id"].tolist(), feed["rank"].tolist())) if feed is not None else {}
    removed_rows = []
    for name in REQUEST_FILTERS:
        for tweet_id in result.removed.get(name, []):
            removed_rows.append(
                f"<tr><td>{escape(name)}</td><td>{tweet_id}</td><td>{authors.get(tweet_id, '')}</td>"
                f'<td class="num">{ranks.get(tweet_id, "") or ""}</td></tr>'
            )
    counts = ", ".join(f"{name}: {len(result.removed.get(name, []))}" for name in REQUEST_FILTERS)
    fallback = (
        f'<p class="fallback">Fallback timeline ({escape(result.fallback_reason)})</p>'
        if result.fallback_reason
        else ""
    )
    failed = (
        f"<p>Sources that failed open: {escape(', '.join(result.failed_sources))}</p>" if result.failed_sources else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>For You explained: user {user_id}</title>
<style>{_STYLE}</style></head><body>
<h1>For You for @{escape(handle or str(user_id))} (user {user_id}), published version {version}</h1>
{fallback}{failed}
<p>{result.kept_count} candidates after the request-time filters; removed per filter: {escape(counts)}.</p>
<h2>Page</h2>
<table id="page"><thead><tr><th>#</th><th>entry</th><th>tweet</th><th>author</th><th>text</th><th>sources</th>
<th>social proof</th><th>score</th><th>batch rank → position</th>{head_cells}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Removed by the filters</h2>
<table id="removed"><thead><tr><th>filter</th><th>tweet</th><th>author</th><th>batch rank</th></tr></thead>
<tbody>{"".join(removed_rows) or '<tr><td colspan="4">nothing removed</td></tr>'}</tbody></table>
</body></html>"""
