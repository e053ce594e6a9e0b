use super::*;

#[test]
fn room_is_shared_between_the_lists() {
    assert_eq!(split_room(1, [true, true], 0), [1, 0]);
    assert_eq!(split_room(1, [true, true], 1), [0, 1]);
    assert_eq!(split_room(32, [true, false], 0), [31, 1]);
    assert_eq!(split_room(32, [false, true], 0), [1, 31]);
    assert_eq!(split_room(5, [true, true], 0), [3, 2]);
    assert_eq!(split_room(5, [false, false], 1), [2, 3]);
    assert_eq!(split_room(32, [true, false, false], 0), [30, 1, 1]);
    assert_eq!(split_room(2, [true, true, true], 2), [1, 0, 1]);
    for room in 1..70 {
        for turn in 0..3 {
            for busy in [[true, false, true], [false; 3], [true; 3]] {
                let c = split_room(room, busy, turn);
                assert_eq!(c.iter().sum::<usize>(), room);
                if room >= 3 {
                    assert!(c.iter().all(|n| *n >= 1), "{c:?}");
                }
            }
        }
    }
    for room in 1..70 {
        for turn in 0..2 {
            let [a, b] = split_room(room, [true, false], turn);
            assert_eq!(a + b, room);
        }
    }
}

#[test]
fn batches_leave_room_for_the_next() {
    assert_eq!(batch_size(1), 1);
    assert_eq!(batch_size(64), 32);
}
