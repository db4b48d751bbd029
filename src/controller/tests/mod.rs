//! Reconciler tests against a scripted API server (layer 2): each test states the cluster the
//! operator sees (its caches), what the API server holds, and the exact calls the reconciler must
//! make, then counts the writes against the budget in `docs/targets.md` (no-op 0, activation ≤ 3,
//! revocation ≤ 2). Fixtures: `super::fixtures`.
mod activity;
mod eligibility;
mod foothold_review;
mod integrity;
mod request;
mod retention;
mod review;
mod role;
mod separation;
mod standing_scan;
mod sweeper;
