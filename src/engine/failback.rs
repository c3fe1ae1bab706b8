//! Failback: list both sides, link them to the frozen base, merge three ways, apply the plan.
