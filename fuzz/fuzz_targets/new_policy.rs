//! `nexus::policy::NewPolicy::parse`: a policy as `PUT /v1/acl/policy` sends it (JSON).
//!
//! Properties: an accepted policy has a name that parses as a `PolicyName`, compiles in the
//! `policies` crate (both patterns, anchored), and survives the policy-file round trip
//! (YAML out, YAML in) with every field equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus::policy::{NewPolicy, PolicyName};
use nexus_api::model::PutPolicyRequest;
use policies::{Permission, Policy};

fuzz_target!(|body: &[u8]| {
    let Ok(request) = serde_json::from_slice::<PutPolicyRequest>(body) else {
        return;
    };
    let Ok(policy) = NewPolicy::parse(request.clone()) else {
        return;
    };
    assert_eq!(policy.request(), &request);
    assert_eq!(
        PolicyName::parse(&request.name).as_ref(),
        Ok(policy.name()),
        "the name re-parses"
    );
    let permissions = request
        .permissions
        .iter()
        .map(|p| p.parse::<Permission>().expect("accepted permissions parse"));
    let compiled = Policy::new(
        request.name.clone(),
        request.spiffe_id_pattern.clone(),
        request.path_pattern.clone(),
        permissions,
    )
    .compile()
    .expect("an accepted policy compiles");
    let yaml = compiled.policy().to_yaml().expect("writes as YAML");
    let back = Policy::from_yaml(&yaml).expect("its own YAML reads back");
    assert_eq!(&back, compiled.policy());
});
