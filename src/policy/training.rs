//! The training-use decision (docs/design.md, "Training-use decision").

use time::OffsetDateTime;

use crate::domain::{ConsentEvent, TrainingBasis, TrainingTag};

/// Everything the decision depends on for one request.
#[derive(Debug, Clone, Copy)]
pub struct TrainingInputs<'a> {
    /// The tenant is a zero-data-retention tenant.
    pub zero_data_retention: bool,
    /// The caller sent the per-request opt-out header.
    pub request_opt_out: bool,
    /// The tenant's consent events, or `None` when they cannot be known
    /// (store unreachable, cache cold).
    pub consent_events: Option<&'a [ConsentEvent]>,
    /// From this instant on, training needs an explicit opt-in. Before it
    /// (or always, when `None`) data is usable unless the tenant opted out.
    pub cutover: Option<OffsetDateTime>,
    /// When the gateway received the request.
    pub received_at: OffsetDateTime,
}

/// Decide whether a request received at `received_at` may be used for training.
pub fn decide_training_use(inputs: TrainingInputs<'_>) -> TrainingTag {
    let deny = |basis| TrainingTag {
        usable: false,
        basis,
    };
    if inputs.zero_data_retention {
        return deny(TrainingBasis::ZeroDataRetention);
    }
    if inputs.request_opt_out {
        return deny(TrainingBasis::RequestOptOut);
    }
    let Some(events) = inputs.consent_events else {
        return deny(TrainingBasis::ConsentUnavailable);
    };
    if let Some(event) = latest_effective(events, inputs.received_at) {
        return if event.opted_in {
            TrainingTag {
                usable: true,
                basis: TrainingBasis::ExplicitOptIn,
            }
        } else {
            deny(TrainingBasis::ExplicitOptOut)
        };
    }
    match inputs.cutover {
        Some(cutover) if inputs.received_at >= cutover => deny(TrainingBasis::DefaultOptOut),
        _ => TrainingTag {
            usable: true,
            basis: TrainingBasis::LegacyDefault,
        },
    }
}

/// The choice in force at `at`: the latest event effective at or before
/// `at` that no later choice cancelled. Between events effective at the
/// same instant, the one recorded last wins.
pub fn latest_effective(events: &[ConsentEvent], at: OffsetDateTime) -> Option<&ConsentEvent> {
    standing(events)
        .into_iter()
        .filter(|e| e.effective_at <= at)
        .max_by_key(|e| (e.effective_at, e.recorded_at))
}

/// The choices scheduled after `now` that still stand, in the order recorded.
pub fn scheduled(events: &[ConsentEvent], now: OffsetDateTime) -> Vec<&ConsentEvent> {
    let mut out = standing(events);
    out.retain(|e| e.effective_at > now);
    out
}

/// The events no later choice cancelled, in the order recorded: a choice
/// recorded while an earlier one was still scheduled (not yet effective)
/// replaces that schedule, so the earlier one never takes effect (an
/// opt-out made now cancels an opt-in set for next month). Events recorded
/// at the same instant keep their order in `events`.
fn standing(events: &[ConsentEvent]) -> Vec<&ConsentEvent> {
    let mut by_recording: Vec<&ConsentEvent> = events.iter().collect();
    by_recording.sort_by_key(|e| e.recorded_at);
    let mut next_recorded: Option<OffsetDateTime> = None;
    let mut kept: Vec<&ConsentEvent> = Vec::with_capacity(by_recording.len());
    for event in by_recording.into_iter().rev() {
        // Recorded in sorted order, the next one is the earliest after it.
        if next_recorded.is_none_or(|next| next >= event.effective_at) {
            kept.push(event);
        }
        next_recorded = Some(event.recorded_at);
    }
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use time::{macros::datetime, Duration};

    use super::*;
    use crate::domain::TenantId;

    const CUTOVER: OffsetDateTime = datetime!(2023-03-01 00:00 UTC);
    const MICRO: Duration = Duration::microseconds(1);

    fn event(opted_in: bool, effective_at: OffsetDateTime) -> ConsentEvent {
        ConsentEvent {
            tenant: TenantId("acme".into()),
            opted_in,
            effective_at,
            recorded_at: effective_at,
            actor: "test".into(),
            source: "test".into(),
            note: None,
        }
    }

    fn decide(events: Option<&[ConsentEvent]>, at: OffsetDateTime) -> TrainingTag {
        decide_training_use(TrainingInputs {
            zero_data_retention: false,
            request_opt_out: false,
            consent_events: events,
            cutover: Some(CUTOVER),
            received_at: at,
        })
    }

    fn tag(usable: bool, basis: TrainingBasis) -> TrainingTag {
        TrainingTag { usable, basis }
    }

    #[test]
    fn no_events_just_before_cutover_is_legacy_usable() {
        let got = decide(Some(&[]), CUTOVER - MICRO);
        assert_eq!(got, tag(true, TrainingBasis::LegacyDefault));
    }

    #[test]
    fn no_events_at_cutover_is_default_opt_out() {
        assert_eq!(
            decide(Some(&[]), CUTOVER),
            tag(false, TrainingBasis::DefaultOptOut)
        );
    }

    #[test]
    fn profile_without_cutover_is_usable_unless_opted_out() {
        let mut inputs = TrainingInputs {
            zero_data_retention: false,
            request_opt_out: false,
            consent_events: Some(&[]),
            cutover: None,
            received_at: datetime!(2030-01-01 00:00 UTC),
        };
        assert_eq!(
            decide_training_use(inputs),
            tag(true, TrainingBasis::LegacyDefault)
        );
        let opt_out = [event(false, datetime!(2029-01-01 00:00 UTC))];
        inputs.consent_events = Some(&opt_out);
        assert_eq!(
            decide_training_use(inputs),
            tag(false, TrainingBasis::ExplicitOptOut)
        );
    }

    #[test]
    fn opt_in_applies_from_its_effective_instant_exactly() {
        let t = datetime!(2024-06-01 12:00 UTC);
        let events = [event(true, t)];
        assert_eq!(
            decide(Some(&events), t),
            tag(true, TrainingBasis::ExplicitOptIn)
        );
        assert_eq!(
            decide(Some(&events), t - MICRO),
            tag(false, TrainingBasis::DefaultOptOut)
        );
    }

    #[test]
    fn opt_out_after_opt_in_denies_later_and_keeps_earlier() {
        let t_in = datetime!(2024-01-01 00:00 UTC);
        let t_out = datetime!(2024-02-01 00:00 UTC);
        let events = [event(true, t_in), event(false, t_out)];
        assert_eq!(
            decide(Some(&events), t_out - MICRO),
            tag(true, TrainingBasis::ExplicitOptIn)
        );
        assert_eq!(
            decide(Some(&events), t_out),
            tag(false, TrainingBasis::ExplicitOptOut)
        );
    }

    #[test]
    fn event_order_in_the_slice_does_not_matter() {
        let t_in = datetime!(2024-01-01 00:00 UTC);
        let t_out = datetime!(2024-02-01 00:00 UTC);
        let events = [event(false, t_out), event(true, t_in)];
        assert_eq!(
            decide(Some(&events), datetime!(2024-03-01 00:00 UTC)).basis,
            TrainingBasis::ExplicitOptOut
        );
    }

    #[test]
    fn same_effective_instant_latest_recorded_wins() {
        let t = datetime!(2024-01-01 00:00 UTC);
        let mut first = event(true, t);
        first.recorded_at = t - Duration::hours(2);
        let mut second = event(false, t);
        second.recorded_at = t - Duration::hours(1);
        let events = [second, first];
        assert_eq!(
            decide(Some(&events), t).basis,
            TrainingBasis::ExplicitOptOut
        );
    }

    #[test]
    fn future_events_do_not_apply_yet() {
        let events = [event(true, datetime!(2030-01-01 00:00 UTC))];
        assert_eq!(
            decide(Some(&events), datetime!(2029-12-31 23:59 UTC)),
            tag(false, TrainingBasis::DefaultOptOut)
        );
    }

    #[test]
    fn unknown_consent_fails_safe() {
        for at in [CUTOVER - Duration::days(400), CUTOVER + Duration::days(1)] {
            assert_eq!(
                decide(None, at),
                tag(false, TrainingBasis::ConsentUnavailable)
            );
        }
    }

    #[test]
    fn zdr_and_request_opt_out_override_an_opt_in() {
        let events = [event(true, CUTOVER)];
        let at = CUTOVER + Duration::days(1);
        for (zdr, opt_out, basis) in [
            (true, false, TrainingBasis::ZeroDataRetention),
            (true, true, TrainingBasis::ZeroDataRetention),
            (false, true, TrainingBasis::RequestOptOut),
        ] {
            for consent in [Some(&events[..]), None] {
                let got = decide_training_use(TrainingInputs {
                    zero_data_retention: zdr,
                    request_opt_out: opt_out,
                    consent_events: consent,
                    cutover: Some(CUTOVER),
                    received_at: at,
                });
                assert_eq!(got, tag(false, basis));
            }
        }
    }

    fn recorded(
        opted_in: bool,
        recorded_at: OffsetDateTime,
        effective_at: OffsetDateTime,
    ) -> ConsentEvent {
        ConsentEvent {
            recorded_at,
            ..event(opted_in, effective_at)
        }
    }

    #[test]
    fn a_later_choice_cancels_one_still_scheduled() {
        let jan = datetime!(2027-01-01 00:00 UTC);
        let feb = datetime!(2027-02-01 00:00 UTC);
        let jan15 = datetime!(2027-01-15 00:00 UTC);
        // Opt-in recorded in January for February; an opt-out made on the 15th.
        let events = [recorded(true, jan, feb), recorded(false, jan15, jan15)];
        for at in [jan15, feb, feb + Duration::days(30)] {
            assert_eq!(
                decide(Some(&events), at),
                tag(false, TrainingBasis::ExplicitOptOut),
                "{at}"
            );
        }
        assert!(scheduled(&events, jan15).is_empty());
        // Scheduled itself for later: the earlier schedule is gone all the same.
        let mar = datetime!(2027-03-01 00:00 UTC);
        let events = [recorded(true, jan, feb), recorded(false, jan15, mar)];
        assert_eq!(
            decide(Some(&events), feb + MICRO),
            decide(Some(&[]), feb + MICRO)
        );
        assert_eq!(
            decide(Some(&events), mar),
            tag(false, TrainingBasis::ExplicitOptOut)
        );
        assert_eq!(scheduled(&events, jan15).len(), 1);
        // A choice already in force when the next is recorded is not cancelled.
        let events = [recorded(true, jan, jan), recorded(false, jan15, feb)];
        assert_eq!(
            decide(Some(&events), jan15),
            tag(true, TrainingBasis::ExplicitOptIn)
        );
        assert_eq!(
            decide(Some(&events), feb),
            tag(false, TrainingBasis::ExplicitOptOut)
        );
        // Recorded exactly at the other's effective instant: that one stands.
        let events = [recorded(true, jan, feb), recorded(false, feb, mar)];
        assert_eq!(
            decide(Some(&events), feb),
            tag(true, TrainingBasis::ExplicitOptIn)
        );
        assert_eq!(
            decide(Some(&events), feb - MICRO),
            decide(Some(&[]), feb - MICRO)
        );
    }
}
