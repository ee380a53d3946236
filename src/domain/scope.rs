//! The device scope: proof that a device was reached through its tenant.
//!
//! A [`DeviceScope`] names one device together with the tenant it belongs to. It is built only
//! where that pairing has been checked: `http/device.rs` (the caller's tenant, role and the
//! device's owner), and the store, from rows it read with their tenant (`store::sessions`).
//! Everything that reads or writes a device's rows takes one, so the tenant is on every path;
//! a test keeps the constructor's callers to those places.

use super::ids::{DeviceId, TenantId};

/// A device of a tenant, as checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceScope {
    tenant: TenantId,
    device: DeviceId,
}

impl DeviceScope {
    /// Pairs a device with its tenant. Only for callers that checked the pair (see the module).
    pub fn checked(tenant: TenantId, device: DeviceId) -> Self {
        Self { tenant, device }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn device(&self) -> DeviceId {
        self.device
    }
}
