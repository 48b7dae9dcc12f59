//! Policy files (`spike policy apply --file`): `policies::Policy::from_yaml`.
//!
//! Properties: an accepted file is a valid policy (it compiles) and round-trips: written with
//! `to_yaml` and read back, every field is equal, and writing it again gives the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::Policy;

fuzz_target!(|yaml: &str| {
    let Ok(policy) = Policy::from_yaml(yaml) else {
        return;
    };
    policy.compile().expect("an accepted file compiles");
    let written = policy.to_yaml().expect("writes");
    let back = Policy::from_yaml(&written).expect("its own output reads back");
    assert_eq!(back, policy);
    assert_eq!(back.to_yaml().expect("writes"), written);
});
