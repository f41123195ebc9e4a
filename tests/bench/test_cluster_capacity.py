"""bench.cluster's table 2 verdict: the capacity model, on figures chosen by hand.

The verdict on issue 27's "3 nodes >= 2.5x one node" comes from this arithmetic, so it
is pinned here: N nodes loaded alike, each on a core of its own, spend per request of
their own one node's CPU alone plus N - 1 requests of the others followed from the
watch. Three nodes reach 2.5x exactly when following one request costs a tenth of
serving one.
"""

from __future__ import annotations

from bench.cluster import Several, several_nodes_row


def figures(alone_us: float, followed_us: float) -> Several:
    return Several(
        one=[1000.0, 1000.0],
        every=[1500.0, 1500.0],
        one_us=[alone_us, alone_us],
        follow_us=[followed_us, followed_us],
    )


def test_three_nodes_pass_when_following_costs_a_tenth_of_serving() -> None:
    row = several_nodes_row("trio", "heartbeat", 3, figures(300.0, 30.0))
    assert row[-3].startswith("2.50x") and row[-3].endswith(": PASS"), row


def test_three_nodes_miss_when_following_costs_more() -> None:
    row = several_nodes_row("trio", "heartbeat", 3, figures(300.0, 31.0))
    assert row[-3].startswith("2.49x") and row[-3].endswith(": MISS"), row


def test_reads_have_no_verdict_and_scale_with_nothing_to_follow() -> None:
    row = several_nodes_row("quart", "read", 2, figures(200.0, 0.0))
    assert row[-3].startswith("2.00x") and "PASS" not in row[-3], row


def test_the_cross_check_takes_the_cost_of_following_from_a_fed_node() -> None:
    """A fed 2 puts per request, its CPU per request 300 -> 360 us: 30 us per put."""
    fed = figures(300.0, 30.0)
    fed.fed, fed.fed_us, fed.fed_ratio = [900.0, 900.0], [360.0, 360.0], [2.0, 2.0]
    row = several_nodes_row("quart", "heartbeat", 3, fed)
    assert "30.0 (30.0-30.0) us per put" in row[-2] and row[-1].startswith("2.50x"), row
