//! The command state machine: the one function that decides every status change.
//!
//! ```text
//! PENDING ──issue──► SENT ──ack──► DELIVERED ──result──► SUCCESSFUL | FAILED
//!    │                 │                │
//!    ├─expire─► EXPIRED └─timeout─► TIMEOUT ◄─timeout─┘
//!    └─cancel─► CANCELED
//! ```
//! A result that arrives while SENT implies the ACK first (SENT → DELIVERED →
//! SUCCESSFUL/FAILED, two steps); the dispatcher applies both through this
//! function. Terminal statuses never change.

use thiserror::Error;

use crate::command::CommandStatus;

/// Something that may change a command's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandEvent {
    /// The platform sends the command to the device.
    Issue,
    /// The device acknowledged receipt.
    Ack,
    /// The device reported its result.
    Result {
        /// Success or failure.
        success: bool,
    },
    /// The command's cache time ran out.
    Expire,
    /// No ACK (while SENT) or no result (while DELIVERED) in time.
    Timeout,
    /// The application cancelled it.
    Cancel,
}

/// Why an event does not apply to a command in its current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransitionRefused {
    /// The command is terminal; nothing changes it any more.
    #[error("command is already {0}")]
    Terminal(CommandStatus),
    /// The event makes no sense in this status (a cancel after sending, an ACK
    /// before sending, a second ACK).
    #[error("{event:?} does not apply to a {from} command")]
    NotApplicable {
        /// The current status.
        from: CommandStatus,
        /// The refused event.
        event: CommandEvent,
    },
}

/// The status that `event` moves a `from` command to, or why it cannot.
pub fn next_status(from: CommandStatus, event: CommandEvent) -> Result<CommandStatus, TransitionRefused> {
    use CommandEvent as E;
    use CommandStatus as S;
    if from.is_terminal() {
        return Err(TransitionRefused::Terminal(from));
    }
    let to = match (from, event) {
        (S::Pending, E::Issue) => S::Sent,
        (S::Pending, E::Expire) => S::Expired,
        (S::Pending, E::Cancel) => S::Canceled,
        (S::Sent, E::Ack) => S::Delivered,
        (S::Sent | S::Delivered, E::Timeout) => S::Timeout,
        (S::Delivered, E::Result { success: true }) => S::Successful,
        (S::Delivered, E::Result { success: false }) => S::Failed,
        _ => return Err(TransitionRefused::NotApplicable { from, event }),
    };
    debug_assert!(to.rank() > from.rank(), "transitions are monotonic");
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandEvent as E;
    use CommandStatus as S;

    const EVENTS: [CommandEvent; 7] = [
        E::Issue,
        E::Ack,
        E::Result { success: true },
        E::Result { success: false },
        E::Expire,
        E::Timeout,
        E::Cancel,
    ];

    #[test]
    fn every_allowed_transition_moves_forward_and_terminal_states_stay() {
        for from in S::ALL {
            for ev in EVENTS {
                match next_status(from, ev) {
                    Ok(to) => {
                        assert!(!from.is_terminal());
                        assert!(to.rank() > from.rank(), "{from} {ev:?} -> {to}");
                    }
                    Err(TransitionRefused::Terminal(s)) => {
                        assert!(from.is_terminal());
                        assert_eq!(s, from);
                    }
                    Err(TransitionRefused::NotApplicable { .. }) => assert!(!from.is_terminal()),
                }
            }
        }
    }

    #[test]
    fn cancel_only_from_pending() {
        for from in S::ALL {
            assert_eq!(next_status(from, E::Cancel).is_ok(), from == S::Pending, "{from}");
        }
    }

    #[test]
    fn expire_only_from_pending() {
        for from in S::ALL {
            assert_eq!(next_status(from, E::Expire).is_ok(), from == S::Pending, "{from}");
        }
    }

    #[test]
    fn the_happy_path() {
        let s = next_status(S::Pending, E::Issue).unwrap();
        let s = next_status(s, E::Ack).unwrap();
        assert_eq!(next_status(s, E::Result { success: true }), Ok(S::Successful));
        assert_eq!(next_status(s, E::Result { success: false }), Ok(S::Failed));
        assert_eq!(next_status(s, E::Timeout), Ok(S::Timeout));
        assert!(next_status(s, E::Ack).is_err());
    }
}
