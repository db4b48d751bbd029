//! Exhaustive tables and property tests for the policy (see the policy-tests work).
