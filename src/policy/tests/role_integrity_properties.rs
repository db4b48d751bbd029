//! Properties of the role-integrity comparison over generated rules (RBAC wildcards included).
use k8s_openapi::api::rbac::v1::PolicyRule;
use proptest::prelude::*;

use crate::policy::role_integrity::{Integrity, canonical, compare};

fn arb_rule() -> impl Strategy<Value = PolicyRule> {
    let pick = |items: &'static [&'static str]| {
        proptest::sample::subsequence(items.to_vec(), 0..=items.len())
            .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    };
    (
        pick(&["", "apps", "*"]),
        pick(&[
            "pods",
            "secrets",
            "pods/exec",
            "*",
            "*/scale",
            "deployments/scale",
        ]),
        pick(&["get", "list", "delete", "*"]),
        pick(&["a", "b"]),
        pick(&["/healthz", "/api/*", "*"]),
    )
        .prop_map(|(groups, resources, verbs, names, urls)| PolicyRule {
            api_groups: Some(groups),
            resources: Some(resources),
            verbs,
            resource_names: Some(names),
            non_resource_urls: Some(urls),
        })
}

proptest! {
    #[test]
    fn a_role_compared_with_itself_is_unchanged(rules in proptest::collection::vec(arb_rule(), 0..5)) {
        let c = canonical(&rules);
        prop_assert_eq!(compare(&c, &c), Integrity::Unchanged);
    }

    #[test]
    fn adding_a_rule_is_never_a_narrowing(
        rules in proptest::collection::vec(arb_rule(), 0..5),
        extra in arb_rule(),
    ) {
        let mut more = rules.clone();
        more.push(extra);
        let verdict = compare(&canonical(&rules), &canonical(&more));
        prop_assert!(!matches!(verdict, Integrity::Narrowed { .. }), "{:?}", verdict);
    }

    #[test]
    fn removing_a_rule_is_never_a_widening(
        rules in proptest::collection::vec(arb_rule(), 1..5),
        drop in 0usize..5,
    ) {
        let mut fewer = rules.clone();
        fewer.remove(drop % rules.len());
        let verdict = compare(&canonical(&rules), &canonical(&fewer));
        prop_assert!(!matches!(verdict, Integrity::Widened { .. }), "{:?}", verdict);
    }

    #[test]
    fn widening_is_the_reverse_of_narrowing(
        a in proptest::collection::vec(arb_rule(), 0..4),
        b in proptest::collection::vec(arb_rule(), 0..4),
    ) {
        let (a, b) = (canonical(&a), canonical(&b));
        if let Integrity::Narrowed { removed } = compare(&a, &b) {
            prop_assert_eq!(compare(&b, &a), Integrity::Widened { added: removed });
        }
    }
}
