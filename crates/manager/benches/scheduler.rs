//! Placement throughput of the scheduler: 1,000 nodes, 100,000 pending tasks of
//! 10 services (some constrained, some with reservations), placed in one pass.
//! Prints the median of 5 runs next to the goal, and how evenly tasks spread.
//!
//! Run: `cargo bench -p manager --bench scheduler`

use api::*;
use manager::scheduler::{self, Scheduler};
use std::collections::HashMap;
use std::time::Instant;

const NODES: usize = 1_000;
const TASKS: usize = 100_000;
const SERVICES: usize = 10;
const RUNS: usize = 5;
const GOAL: f64 = 100_000.0;
/// Nomad's C1M challenge averaged this many placements per second.
const NOMAD_C1M: f64 = 3_750.0;

fn nodes() -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("zone".to_string(), format!("z{}", i % 4));
            Node {
                meta: Meta::new(format!("node{i:04}")),
                spec: NodeSpec {
                    labels,
                    role: if i < 3 {
                        NodeRole::Manager
                    } else {
                        NodeRole::Worker
                    },
                    availability: Availability::Active,
                },
                description: NodeDescription {
                    hostname: format!("host{i}"),
                    resources: Resources {
                        nano_cpus: 64_000_000_000,
                        memory_bytes: 256 << 30,
                    },
                    ..NodeDescription::default()
                },
                status: NodeStatus {
                    state: NodeState::Ready,
                    ..NodeStatus::default()
                },
                manager_status: None,
            }
        })
        .collect()
}

/// Service `s` has every 10th task; services 0-2 are constrained to one zone
/// or away from managers, services 3-4 reserve CPU and memory.
fn tasks() -> Vec<Task> {
    (0..TASKS)
        .map(|i| {
            let s = i % SERVICES;
            let mut spec = TaskSpec::exec(["sleep", "1000"]);
            match s {
                0 => spec.placement.constraints = vec!["node.labels.zone==z1".into()],
                1 => spec.placement.constraints = vec!["node.labels.zone!=z0".into()],
                2 => spec.placement.constraints = vec!["node.role==worker".into()],
                3 | 4 => {
                    spec.resources.reservations = Resources {
                        nano_cpus: 100_000_000,
                        memory_bytes: 64 << 20,
                    }
                }
                _ => {}
            }
            Task {
                meta: Meta::new(format!("task{i:06}")),
                service_id: format!("svc{s}"),
                slot: (i / SERVICES) as u64 + 1,
                node_id: None,
                spec,
                spec_version: 1,
                desired_state: TaskState::Running,
                status: TaskStatus {
                    state: TaskState::Pending,
                    ..TaskStatus::default()
                },
                restarts: vec![],
            }
        })
        .collect()
}

fn main() {
    let nodes = nodes();
    let tasks = tasks();
    let mut times = Vec::new();
    let mut last = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut s = Scheduler::new(nodes.iter(), std::iter::empty::<&Task>());
        let placed = s.place(tasks.iter());
        times.push(start.elapsed());
        last = placed;
    }
    times.sort();
    let median = times[RUNS / 2];
    let rate = TASKS as f64 / median.as_secs_f64();
    let failed = last.iter().filter(|(_, r)| r.is_err()).count();
    println!(
        "scheduler: {NODES} nodes, {TASKS} pending tasks of {SERVICES} services, median of {RUNS} runs: {:.1} ms = {rate:.0} placements/s (goal >= {GOAL:.0}/s: {}; Nomad C1M averaged {NOMAD_C1M:.0}/s)",
        median.as_secs_f64() * 1e3,
        if rate >= GOAL { "met" } else { "NOT met" },
    );
    println!("unplaced: {failed}");

    // The whole component as the runtime calls it: reads the state, places,
    // and builds one Update op per task.
    let mut state = State::default();
    let ops: Vec<Op> = nodes
        .iter()
        .cloned()
        .map(|n| Op::Create(n.into()))
        .chain(tasks.iter().cloned().map(|t| Op::Create(t.into())))
        .collect();
    if let Err(e) = state.apply(
        1,
        &Batch {
            time: Timestamp(0),
            ops,
        },
    ) {
        eprintln!("building the state failed: {e}");
        return;
    }
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let plan = scheduler::reconcile(&state, Timestamp(1));
        times.push(start.elapsed());
        assert_eq!(plan.ops.len(), TASKS);
    }
    times.sort();
    let median = times[RUNS / 2];
    println!(
        "scheduler::reconcile over the same state (placement + {TASKS} Update ops), median of {RUNS}: {:.1} ms = {:.0} tasks/s",
        median.as_secs_f64() * 1e3,
        TASKS as f64 / median.as_secs_f64()
    );

    // Spread: per service over the nodes it may use, and overall.
    let node_of: HashMap<&str, &str> = last
        .iter()
        .filter_map(|(t, r)| r.as_ref().ok().map(|n| (t.as_str(), n.as_str())))
        .collect();
    let mut per_service: HashMap<&str, HashMap<&str, u32>> = HashMap::new();
    let mut per_node: HashMap<&str, u32> = nodes.iter().map(|n| (n.meta.id.as_str(), 0)).collect();
    for t in &tasks {
        if let Some(n) = node_of.get(t.meta.id.as_str()) {
            *per_service
                .entry(&t.service_id)
                .or_default()
                .entry(n)
                .or_default() += 1;
            *per_node.entry(n).or_default() += 1;
        }
    }
    let mut services: Vec<_> = per_service.into_iter().collect();
    services.sort_by(|a, b| a.0.cmp(b.0));
    for (svc, counts) in services {
        let eligible = nodes
            .iter()
            .filter(|n| {
                let t = tasks.iter().find(|t| t.service_id == svc);
                t.and_then(|t| scheduler::parse_constraints(&t.spec.placement.constraints).ok())
                    .is_some_and(|c| scheduler::constraints_match(&c, n))
            })
            .map(|n| counts.get(n.meta.id.as_str()).copied().unwrap_or(0));
        let (min, max) = eligible.fold((u32::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
        println!(
            "  {svc}: tasks per eligible node min {min} max {max} (max-min {})",
            max - min
        );
    }
    let min = per_node.values().min().copied().unwrap_or(0);
    let max = per_node.values().max().copied().unwrap_or(0);
    println!("  all services: tasks per node min {min} max {max} (max-min {}; constrained services make zone z1 busier)", max - min);
}
