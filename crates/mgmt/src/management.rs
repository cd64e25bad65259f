//! The [`Management`] trait: what the hypervisor offers the command layer.

use crate::model::{HartStats, HostStats, MgmtError, VcpuStats, VmSummary};
use crate::ring::RingView;

/// The operations behind the commands, implemented by the hypervisor (and by
/// mocks in tests). Object safe, so `&mut dyn Management` works too.
///
/// Queries hand out records through callbacks, so the implementation can lend
/// names and ring contents from behind its locks without copying or
/// allocating. [`crate::execute`] never calls another method of the trait
/// while a callback runs, so holding a lock across a callback cannot deadlock
/// against the command layer itself. The callbacks write to the reply's output
/// though: if that output is the console, do not hold a lock that console
/// output also takes (see the crate documentation on wiring).
///
/// Lifecycle methods should enforce the rules of [`crate::Action::check`].
/// Names are passed as given; an unknown name is [`MgmtError::UnknownVm`].
pub trait Management {
    /// Calls `f` once for every VM in the configuration (whatever its state),
    /// in index order.
    fn for_each_vm(&self, f: &mut dyn FnMut(&VmSummary<'_>));

    /// Calls `f` once with the VM called `name`. The default searches
    /// [`Management::for_each_vm`].
    fn vm(&self, name: &str, f: &mut dyn FnMut(&VmSummary<'_>)) -> Result<(), MgmtError> {
        let mut found = false;
        self.for_each_vm(&mut |s| {
            if !found && s.name == name {
                found = true;
                f(s);
            }
        });
        if found {
            Ok(())
        } else {
            Err(MgmtError::UnknownVm)
        }
    }

    /// Calls `f` for each vCPU of the VM called `name`, in vCPU order. A VM that
    /// holds no resources reports nothing, or its configured vCPUs with zero
    /// counters and no hart. Fails only with [`MgmtError::UnknownVm`].
    fn for_each_vcpu(&self, name: &str, f: &mut dyn FnMut(&VcpuStats)) -> Result<(), MgmtError>;

    /// Facts about the machine as a whole.
    fn host(&self) -> HostStats;

    /// Calls `f` for each hart in use, in logical CPU order.
    fn for_each_hart(&self, f: &mut dyn FnMut(&HartStats));

    /// Calls `f` with the hypervisor's log ring.
    fn with_hypervisor_log(&self, f: &mut dyn FnMut(RingView<'_>));

    /// Calls `f` with the console history ring of the VM called `name`.
    fn with_console_history(
        &self,
        name: &str,
        f: &mut dyn FnMut(RingView<'_>),
    ) -> Result<(), MgmtError>;

    /// Creates the VM from its configuration and runs it.
    fn start(&mut self, name: &str) -> Result<(), MgmtError>;

    /// Stops scheduling its vCPUs; the other VMs are not disturbed.
    fn pause(&mut self, name: &str) -> Result<(), MgmtError>;

    /// Schedules a paused VM again, its clock and timers coherent.
    fn resume(&mut self, name: &str) -> Result<(), MgmtError>;

    /// Stops the VM for good, without asking the guest.
    fn stop(&mut self, name: &str) -> Result<(), MgmtError>;

    /// Resets its vCPUs and reloads its images.
    fn reboot(&mut self, name: &str) -> Result<(), MgmtError>;

    /// Stops it if needed and frees its memory.
    fn destroy(&mut self, name: &str) -> Result<(), MgmtError>;

    /// Sends console input to the VM called `name`.
    fn focus_console(&mut self, name: &str) -> Result<(), MgmtError>;
}
