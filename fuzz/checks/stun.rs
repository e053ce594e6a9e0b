//! The invariants of the STUN reader (src/tasks/public_ip/stun/wire.rs and
//! `stun::read_answer`) on any datagram: a STUN server's answer, or
//! anything else that reaches the socket. Shared by the fuzz target `stun`
//! and by `tests/it/fuzz_regressions.rs`.
//!
//! - nothing panics;
//! - what decodes writes back to bytes that decode to the same message,
//!   and those bytes are the input but for padding (the writer pads with
//!   zeros, a sender may pad with anything);
//! - the answer to a transaction is an address only for a Binding success
//!   answer of that transaction holding XOR-MAPPED-ADDRESS, and a failure
//!   only for a message of that transaction; everything else is ignored.

use zos_perf::tasks::public_ip::stun::wire::{self, Attribute, Class};
use zos_perf::tasks::public_ip::stun::{read_answer, Answer};

pub fn check(data: &[u8]) {
    let decoded = wire::decode(data);
    if let Ok(m) = &decoded {
        let again = wire::encode(m).expect("a decoded message can be written");
        assert_eq!(again.len(), data.len(), "written at another length");
        assert_eq!(wire::decode(&again).as_ref(), Ok(m), "no round trip");
        assert_eq!(wire::header_transaction(data), Some(m.transaction));
    }
    // As the answer to its own transaction (if it has one) and to another.
    let own = wire::header_transaction(data);
    let other = own.map_or([0; 12], |mut id| {
        id[0] ^= 1;
        id
    });
    for id in own.into_iter().chain([other]) {
        match read_answer(data, id) {
            Answer::Address(ip) => {
                let m = decoded.as_ref().expect("an address from a broken message");
                assert_eq!(m.transaction, id);
                assert_eq!((m.class, m.method), (Class::Success, wire::BINDING));
                assert!(m.attributes.iter().any(
                    |a| matches!(a, Attribute::XorMappedAddress(x) if x.ip().to_canonical() == ip)
                ));
            }
            Answer::Failed(_) => assert_eq!(own, Some(id), "failed by another's message"),
            Answer::NotOurs(_) => {}
        }
    }
}
