//! Rebalancing, with Redis: every replica reports its socket count beside
//! its heartbeat, and one above its fair share sends the excess elsewhere,
//! oldest first and at most `rate` a second, the way a drain does: when it
//! is above the share by more than the slack, or while another replica is
//! below the share by more than the slack (a new replica fills up). The
//! slack is the tolerance, and never less than [`MIN_SLACK`] sockets.
//! Never while another replica drains: a deploy's wave is not added to.
//!
//! A replica's fair share is the live replicas' sockets divided among those
//! not draining. Shedding stops at the fair share, never below it, and a
//! replica at or below its share never sheds, so a socket only leaves a
//! replica above the average; once every replica is within the tolerance
//! of the share, nothing moves.
//!
//! A socket sent off is counted by its old replica for a while
//! ([`IN_TRANSIT`]), until it has had time to reconnect: otherwise the
//! sockets on their way would vanish from every count, the fair share
//! would fall with them, and the replicas would shed ever more.
//!
//! Replicas above their share do not refuse new sockets: nginx counts a
//! refused (503) upgrade that it retries as a failure and sends nothing to
//! that replica for `fail_timeout`, and replicas refusing on reports a
//! moment old locked clients out of all of them. Where a shed client lands
//! is the balancer's choice; those that land on another replica above the
//! share are sent on again, oldest first, until the shares even out.

use super::status::StatusSource;
use crate::door::DoorState;
use crate::hub::ReplicaReport as Report;
use std::sync::Arc;
use std::time::Duration;

/// From `--rebalance-tolerance` and `--rebalance-rate`.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceSettings {
    /// How far (a fraction) this replica may be above the fair share, or
    /// another below it, before sockets move.
    pub tolerance: f64,
    /// Sockets sent elsewhere per second, at most.
    pub rate: f64,
}

/// How often a replica reports and looks at the others: the reports a
/// shedding replica acts on are at most this old.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// How long a socket sent off still counts for its old replica: the time a
/// client takes to reconnect. Longer would hold the fair share above the
/// truth, and the replicas that take the sockets would overshoot it.
const IN_TRANSIT: Duration = Duration::from_secs(2);

/// Looks in a row that must find a replica over the slack, with the
/// cluster's total steady, before it sheds. While clients pour in (a
/// start, a load test, a deploy) every replica's report is up to
/// [`REPORT_EVERY`] old, each from another moment, and the replicas look
/// uneven when they are not: a replica that shed then would cut off
/// clients that a balancer had spread evenly.
const LOOKS_BEFORE_SHEDDING: u32 = 3;

/// The least imbalance, in sockets, that moves any: a replica's slack
/// around the fair share is the tolerance or this, whichever is more. At a
/// handful of sockets a share is rounded and one socket is a large
/// fraction; moving it would cut a client off for nothing.
const MIN_SLACK: f64 = 10.0;

/// How often a shedding replica sends some sockets off: in small steps, so
/// its rate holds over any tenth of a second.
const STEP: Duration = Duration::from_millis(50);

/// The fair share of each replica not draining: every live replica's
/// sockets, divided among them, rounded up.
fn fair_share(reports: &[Report]) -> Option<u64> {
    let active = reports.iter().filter(|r| !r.draining).count() as u64;
    let total: u64 = reports.iter().map(|r| r.sockets).sum();
    (active > 0).then(|| total.div_ceil(active))
}

/// How far from the fair share a replica may be before sockets move.
fn slack(fair: u64, settings: RebalanceSettings) -> f64 {
    (fair as f64 * settings.tolerance).max(MIN_SLACK)
}

/// How many of `mine` to send elsewhere: the excess over the fair share,
/// once it is beyond the slack or another replica is `starved` (below the
/// share by more than the slack).
fn excess(mine: u64, fair: u64, settings: RebalanceSettings, starved: bool) -> u64 {
    let slack = slack(fair, settings);
    if mine <= fair || ((mine - fair) as f64 <= slack && !starved) {
        return 0;
    }
    mine - fair
}

/// Reports and rebalances until the drain starts.
pub(super) async fn run(door: DoorState, settings: RebalanceSettings, source: Arc<StatusSource>) {
    let mut steps = tokio::time::interval(STEP);
    steps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let steps_per_report = (REPORT_EVERY.as_millis() / STEP.as_millis()) as u32;
    let mut step = 0u32;
    // Sockets still to send off since the last look, and how many the rate
    // allows now (a fraction carried over).
    let mut to_shed = 0u64;
    let mut budget = 0.0;
    // When sockets were sent off, and how many, for [`IN_TRANSIT`].
    let mut sent_off: std::collections::VecDeque<(tokio::time::Instant, u64)> = Default::default();
    let mut patience = Patience::default();
    loop {
        tokio::select! {
            _ = steps.tick() => {}
            _ = door.draining.cancelled() => break,
        }
        if step.is_multiple_of(steps_per_report) {
            let now = tokio::time::Instant::now();
            while sent_off
                .front()
                .is_some_and(|(at, _)| now - *at > IN_TRANSIT)
            {
                sent_off.pop_front();
            }
            let in_transit = sent_off.iter().map(|(_, n)| n).sum();
            let look = look(&door, &source, settings, in_transit).await;
            to_shed = patience.decide(&look);
            if to_shed > 0 {
                tracing::info!(
                    shed = to_shed,
                    total = look.total,
                    "rebalancing: sending sockets to replicas with room"
                );
            }
        }
        step = step.wrapping_add(1);
        if to_shed == 0 {
            budget = 0.0;
            continue;
        }
        budget = (budget + settings.rate * STEP.as_secs_f64()).min(settings.rate.max(1.0));
        let now = (budget as u64).min(to_shed);
        if now > 0 {
            let sent = door.hub.shed(now as usize) as u64;
            budget -= now as f64;
            to_shed -= now;
            door.metrics.rebalanced.inc_by(sent);
            sent_off.push_back((tokio::time::Instant::now(), sent));
        }
    }
    // Reported once more as draining, so the others count this replica's
    // sockets without counting it as a home for them.
    let _ = source
        .report(&door, door.sockets().max(0) as u64, true)
        .await;
}

/// What one look at the replicas found.
#[derive(Debug, Default)]
struct Look {
    /// How many of this replica's sockets to send off.
    over: u64,
    /// Every live replica's sockets.
    total: u64,
    /// The slack around the fair share.
    slack: f64,
}

/// Whether looks in a row found this replica over its share with the
/// total steady ([`LOOKS_BEFORE_SHEDDING`]).
#[derive(Debug, Default)]
struct Patience {
    looks_over: u32,
    last_total: u64,
}

impl Patience {
    /// How many sockets to send off after this look.
    fn decide(&mut self, look: &Look) -> u64 {
        // Steady: the total moved by no more than the slack since the last
        // look. Once shedding, it goes on while over the share: sockets on
        // their way are counted twice for a moment, and the total moves
        // with them.
        let steady = look.total.abs_diff(self.last_total) as f64 <= look.slack;
        let shedding = self.looks_over >= LOOKS_BEFORE_SHEDDING;
        self.last_total = look.total;
        self.looks_over = if look.over > 0 && (steady || shedding) {
            self.looks_over + 1
        } else {
            0
        };
        if self.looks_over >= LOOKS_BEFORE_SHEDDING {
            look.over
        } else {
            0
        }
    }
}

/// Reports this replica (its sockets and those on their way elsewhere),
/// reads the others: how many it should send off.
async fn look(
    door: &DoorState,
    source: &StatusSource,
    settings: RebalanceSettings,
    in_transit: u64,
) -> Look {
    let mine = door.sockets().max(0) as u64;
    if let Err(err) = source.report(door, mine + in_transit, false).await {
        tracing::debug!(%err, "could not report this replica's load");
        return Look::default();
    }
    let reports = match door.hub.replicas().await {
        Ok(reports) => reports,
        Err(err) => {
            tracing::debug!(%err, "could not read the replicas' loads");
            return Look::default();
        }
    };
    let Some(fair) = fair_share(&reports) else {
        return Look::default();
    };
    let total = reports.iter().map(|r| r.sockets).sum();
    let slack = slack(fair, settings);
    // While another replica drains (a deploy rolls), its sockets are on
    // their way: shedding now would add to that wave, and the share is
    // moving. Rebalancing resumes once no replica drains.
    if reports.iter().any(|r| r.draining) {
        return Look {
            over: 0,
            total,
            slack,
        };
    }
    let starved = reports.iter().any(|r| {
        r.server != door.hub.settings().server_id && (r.sockets as f64) < fair as f64 - slack
    });
    Look {
        over: excess(mine, fair, settings, starved),
        total,
        slack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sockets: u64, draining: bool) -> Report {
        Report {
            server: String::new(),
            sockets,
            draining,
            status: None,
        }
    }

    const SETTINGS: RebalanceSettings = RebalanceSettings {
        tolerance: 0.1,
        rate: 20.0,
    };

    #[test]
    fn a_new_replica_takes_a_share_and_no_one_sheds_below_it() {
        let reports = [
            report(200, false),
            report(200, false),
            report(200, false),
            report(0, false),
        ];
        let fair = fair_share(&reports).unwrap();
        assert_eq!(fair, 150);
        assert_eq!(excess(200, fair, SETTINGS, true), 50, "down to the share");
        assert_eq!(excess(0, fair, SETTINGS, true), 0);
        assert_eq!(
            excess(160, fair, SETTINGS, false),
            0,
            "within the tolerance"
        );
        assert_eq!(excess(160, fair, SETTINGS, true), 10, "while one starves");
        assert_eq!(
            excess(150, fair, SETTINGS, true),
            0,
            "never below the share"
        );
    }

    #[test]
    fn nothing_moves_while_clients_pour_in() {
        let look = |over, total| Look {
            over,
            total,
            slack: 30.0,
        };
        let mut patience = Patience::default();
        // Reports taken at different moments of a ramp look uneven.
        for total in [100, 300, 500, 700, 900] {
            assert_eq!(patience.decide(&look(80, total)), 0);
        }
        // Then steady around 900: the third look in a row sheds.
        assert_eq!(patience.decide(&look(80, 900)), 0);
        assert_eq!(patience.decide(&look(80, 905)), 0);
        assert_eq!(patience.decide(&look(80, 900)), 80, "the third steady look");
        // Once shedding, a moving total does not stop it; being even does.
        assert_eq!(patience.decide(&look(60, 960)), 60);
        assert_eq!(patience.decide(&look(0, 900)), 0);
        assert_eq!(patience.decide(&look(40, 900)), 0, "patient again");
    }

    #[test]
    fn a_handful_of_sockets_never_moves() {
        // Three replicas holding 2, 1 and 0: the share is 1, the empty one
        // is below it, and yet moving a socket gains nothing.
        let fair = fair_share(&[report(2, false), report(1, false), report(0, false)]).unwrap();
        assert_eq!(fair, 1);
        assert!(0.0 >= fair as f64 - slack(fair, SETTINGS), "none starves");
        assert_eq!(excess(2, fair, SETTINGS, false), 0);
        assert_eq!(excess(30, 20, SETTINGS, false), 0, "ten over is the least");
        assert_eq!(excess(31, 20, SETTINGS, false), 11);
    }

    #[test]
    fn a_draining_replica_counts_its_sockets_but_takes_none() {
        let reports = [report(300, true), report(150, false), report(150, false)];
        assert_eq!(fair_share(&reports), Some(300));
        assert_eq!(fair_share(&[report(10, true)]), None);
    }
}
