//! The layers of the flush trace, top to bottom: where a flush is counted on its way from
//! the agent down to the host's disks. One type for the diagnosis, the flush gate of
//! `compare`, the summary's trace column and the flush-trace figure; its names are the
//! report's text (the `results.csv` columns are [`Layer::flushes`]'s fields).

use crate::ResultRow;
use std::fmt;

/// One layer of the flush trace; ordered top (agent) to bottom (pool vdevs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Layer {
    /// The agent's own flushes (`agent_flushes`).
    #[serde(rename = "agent")]
    Agent,
    /// The guest's block device (`guest_dev_flushes`).
    #[serde(rename = "guest device")]
    GuestDevice,
    /// The hypervisor's block layer (`hv_flushes`).
    #[serde(rename = "hypervisor")]
    Hypervisor,
    /// The host's block device (`host_dev_flushes`).
    #[serde(rename = "host device")]
    HostDevice,
    /// ZFS's intent log commits (`zil_commits`).
    #[serde(rename = "ZIL")]
    Zil,
    /// The flushes of the pool's disks (`vdev_flushes`).
    #[serde(rename = "pool vdevs")]
    PoolVdevs,
}

impl Layer {
    /// Every layer, top to bottom.
    pub const ALL: [Layer; 6] = [
        Layer::Agent,
        Layer::GuestDevice,
        Layer::Hypervisor,
        Layer::HostDevice,
        Layer::Zil,
        Layer::PoolVdevs,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Agent => "agent",
            Layer::GuestDevice => "guest device",
            Layer::Hypervisor => "hypervisor",
            Layer::HostDevice => "host device",
            Layer::Zil => "ZIL",
            Layer::PoolVdevs => "pool vdevs",
        }
    }

    /// The flushes a row counted at this layer; `None` when it was not measured.
    pub fn flushes(self, r: &ResultRow) -> Option<u64> {
        match self {
            Layer::Agent => Some(r.agent_flushes),
            Layer::GuestDevice => r.guest_dev_flushes,
            Layer::Hypervisor => r.hv_flushes,
            Layer::HostDevice => r.host_dev_flushes,
            Layer::Zil => r.zil_commits,
            Layer::PoolVdevs => r.vdev_flushes,
        }
    }

    /// Below the hypervisor, on the host (where QEMU's skip of an empty flush and other
    /// programs' flushes show).
    pub fn on_host(self) -> bool {
        self > Layer::Hypervisor
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_and_counters() {
        let names: Vec<String> = Layer::ALL.iter().map(Layer::to_string).collect();
        assert_eq!(
            names,
            [
                "agent",
                "guest device",
                "hypervisor",
                "host device",
                "ZIL",
                "pool vdevs"
            ]
        );
        for l in Layer::ALL {
            assert_eq!(serde_json::to_value(l).unwrap(), l.name());
        }
        assert!(Layer::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            Layer::ALL.map(Layer::on_host),
            [false, false, false, true, true, true]
        );
        let r = ResultRow {
            agent_flushes: 1,
            guest_dev_flushes: Some(2),
            hv_flushes: Some(3),
            host_dev_flushes: Some(4),
            zil_commits: Some(5),
            vdev_flushes: Some(6),
            ..Default::default()
        };
        assert_eq!(
            Layer::ALL.map(|l| l.flushes(&r)),
            [1, 2, 3, 4, 5, 6].map(Some)
        );
    }
}
