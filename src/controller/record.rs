//! Recording what happened: one [`Occurrence`] becomes its Event, its audit line and, when the
//! routes hear of it, its notification — from the request reconciler and the sweeper alike.
use kube::Resource;
use kube::runtime::events::EventType;

use crate::api::ActivationRequest;
use crate::audit::{self, AuditRecord};
use crate::notify::{EventKind, Notification};
use crate::policy::transition::{Occurrence, Severity};

use super::context::Context;

/// Whom an occurrence is about, as the audit line and the notification name it.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub request: &'a str,
    pub requester: &'a str,
    /// The PrivilegedRole's name (for a binding no request accounts for: its roleRef).
    pub role: &'a str,
    pub namespaces: &'a [String],
}

impl<'a> About<'a> {
    pub fn request(request: &'a ActivationRequest, name: &'a str) -> Self {
        Self {
            request: name,
            requester: request.requester_name(),
            role: &request.spec.role,
            namespaces: &request.spec.namespaces,
        }
    }
}

/// Publishes the occurrence's Event on `object`, writes its audit line and notifies.
pub fn record<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    about: About<'_>,
    happened: &Occurrence,
) {
    if let Some(event) = &happened.event {
        let type_ = match event.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        };
        ctx.publish(
            object,
            type_,
            event.reason,
            event.action,
            event.note.clone(),
        );
    }
    let record = AuditRecord {
        decision: happened.decision,
        request: about.request,
        requester: about.requester,
        role: about.role,
        namespaces: about.namespaces,
        until: happened.until,
        approvers: &happened.approvers,
        reason: &happened.reason,
        message: &happened.message,
        break_glass: happened.break_glass,
    };
    audit::record(&record);
    if happened.notified
        && let Some(kind) = EventKind::of(happened.decision, happened.break_glass)
    {
        ctx.notifier
            .notify(Notification::from_audit(kind, &record, ctx.now()));
    }
}
