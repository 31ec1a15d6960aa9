//! The hypervisors that boot a guest, behind one interface ([`boot::Hypervisor`],
//! driven by the one frame loop [`boot::run`]): QEMU ([`qemu`]) and VirtualBox
//! ([`vbox`]). The VM names both carry, with the run id, are made here.

pub mod boot;
pub mod qemu;
pub mod vbox;

/// The name of the VM of one repetition of a target. Run ids and target names are
/// validated, so the name is safe in VBoxManage argv and file names.
pub fn vm_name(run_id: &str, target: &str, rep: u32) -> String {
    format!("zvbench-{run_id}-{target}-{rep}")
}

/// The run id of a VM name [`vm_name`] gives (`zvbench-<run id>-<target>-<rep>`), which
/// QEMU guests carry as their `-name` too.
pub fn run_of(vm: &str) -> Option<&str> {
    let (id, rest) = crate::host::owner::split_run_id(vm.strip_prefix("zvbench-")?)?;
    let (target, rep) = rest.rsplit_once('-')?;
    (crate::names::check_name(target).is_ok() && rep.parse::<u32>().is_ok()).then_some(id)
}

/// Whether a VM name is one [`vm_name`] gives.
pub fn is_ours(vm: &str) -> bool {
    run_of(vm).is_some()
}
