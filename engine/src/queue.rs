//! A small generic dependency queue: hands out nodes whose dependencies have all finished, and on
//! failure withdraws everything downstream. Knows nothing about keys, rules or threads.
//!
//! Steps, as the executor drives it:
//! 1. [`DependencyQueue::new`] with each node's dependencies (indices into the same list);
//!    nodes without dependencies are ready at once.
//! 2. [`DependencyQueue::pop`] hands out a ready node; ready nodes come out deepest-chain first
//!    (the node with the longest path of dependents below it), so long chains start early.
//! 3. [`DependencyQueue::finish`] with success makes dependents whose last dependency this was
//!    ready; with failure, marks every transitive dependent skipped and returns them.
//! 4. Done when nothing is ready or running ([`DependencyQueue::is_idle`]).

use std::collections::BinaryHeap;

/// Where a node is in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Waiting for dependencies.
    Waiting,
    /// All dependencies done; not yet handed out.
    Ready,
    /// Handed out, not finished.
    Running,
    /// Finished successfully.
    Done,
    /// Finished with failure.
    Failed,
    /// Withdrawn because a dependency failed.
    Skipped,
}

/// The queue. Node `i`'s dependencies are `deps[i]`.
#[derive(Debug)]
pub struct DependencyQueue {
    waiting_on: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    slots: Vec<Slot>,
    priority: Vec<usize>,
    ready: BinaryHeap<(usize, std::cmp::Reverse<usize>)>,
    running: usize,
}

impl DependencyQueue {
    /// Builds the queue. `deps` must be acyclic (the graph checks that first).
    pub fn new(deps: &[Vec<usize>]) -> Self {
        let n = deps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        // Longest chain of dependents below each node, computed in reverse topological order.
        let order = topo_order(deps, &dependents);
        let mut priority = vec![0usize; n];
        for &i in order.iter().rev() {
            priority[i] = dependents[i]
                .iter()
                .map(|&j| priority[j] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut q = DependencyQueue {
            waiting_on: deps.iter().map(Vec::len).collect(),
            dependents,
            slots: vec![Slot::Waiting; n],
            priority,
            ready: BinaryHeap::new(),
            running: 0,
        };
        for i in 0..n {
            if q.waiting_on[i] == 0 {
                q.make_ready(i);
            }
        }
        q
    }

    fn make_ready(&mut self, i: usize) {
        self.slots[i] = Slot::Ready;
        self.ready.push((self.priority[i], std::cmp::Reverse(i)));
    }

    /// The next ready node, if any; it becomes running.
    pub fn pop(&mut self) -> Option<usize> {
        let (_, std::cmp::Reverse(i)) = self.ready.pop()?;
        self.slots[i] = Slot::Running;
        self.running += 1;
        Some(i)
    }

    /// Marks running node `i` finished. On failure returns every node withdrawn because of it.
    pub fn finish(&mut self, i: usize, ok: bool) -> Vec<usize> {
        assert_eq!(self.slots[i], Slot::Running, "finish of a node not running");
        self.running -= 1;
        if ok {
            self.slots[i] = Slot::Done;
            for j in self.dependents[i].clone() {
                self.waiting_on[j] -= 1;
                if self.waiting_on[j] == 0 && self.slots[j] == Slot::Waiting {
                    self.make_ready(j);
                }
            }
            return Vec::new();
        }
        self.slots[i] = Slot::Failed;
        let mut skipped = Vec::new();
        let mut stack = self.dependents[i].clone();
        while let Some(j) = stack.pop() {
            if self.slots[j] == Slot::Waiting {
                self.slots[j] = Slot::Skipped;
                skipped.push(j);
                stack.extend(self.dependents[j].iter().copied());
            }
        }
        skipped.sort_unstable();
        skipped
    }

    /// Withdraws every node not yet handed out (used when a failure stops the build).
    pub fn drain_unstarted(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if matches!(s, Slot::Waiting | Slot::Ready) {
                *s = Slot::Skipped;
                out.push(i);
            }
        }
        self.ready.clear();
        out
    }

    /// Nodes handed out and not finished.
    pub fn running(&self) -> usize {
        self.running
    }

    /// True when nothing is ready and nothing is running.
    pub fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.running == 0
    }

    /// The slot of node `i`.
    pub fn slot(&self, i: usize) -> Slot {
        self.slots[i]
    }
}

/// Kahn's algorithm; nodes on a cycle (which the graph forbids) are left out.
pub fn topo_order(deps: &[Vec<usize>], dependents: &[Vec<usize>]) -> Vec<usize> {
    let mut left: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut stack: Vec<usize> = (0..deps.len()).rev().filter(|&i| left[i] == 0).collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(i) = stack.pop() {
        order.push(i);
        for &j in dependents[i].iter().rev() {
            left[j] -= 1;
            if left[j] == 0 {
                stack.push(j);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the queue to completion, failing the nodes in `fail`; returns the order of
    /// finished nodes and the skipped ones.
    fn drive(deps: &[Vec<usize>], fail: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut q = DependencyQueue::new(deps);
        let mut done = Vec::new();
        let mut skipped = Vec::new();
        while let Some(i) = q.pop() {
            for &d in &deps[i] {
                assert_eq!(q.slot(d), Slot::Done, "{i} handed out before its dep {d}");
            }
            done.push(i);
            skipped.extend(q.finish(i, !fail.contains(&i)));
        }
        assert!(q.is_idle());
        (done, skipped)
    }

    #[test]
    fn dependencies_first() {
        // 0 <- 1 <- 3, 0 <- 2 <- 3
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2]];
        let (order, skipped) = drive(&deps, &[]);
        assert_eq!(order.len(), 4);
        assert_eq!(order[0], 0);
        assert_eq!(order[3], 3);
        assert!(skipped.is_empty());
    }

    #[test]
    fn failure_withdraws_exactly_the_downstream() {
        // 0 <- 1 <- 2 ; 3 independent ; 4 depends on 1 and 3
        let deps = vec![vec![], vec![0], vec![1], vec![], vec![1, 3]];
        let (ran, mut skipped) = drive(&deps, &[1]);
        skipped.sort_unstable();
        assert_eq!(skipped, vec![2, 4]);
        let mut ran = ran;
        ran.sort_unstable();
        assert_eq!(ran, vec![0, 1, 3]);
    }

    #[test]
    fn longest_chain_goes_first() {
        // 0 and 1 both ready; 1 heads a chain 1 <- 2 <- 3.
        let deps = vec![vec![], vec![], vec![1], vec![2]];
        let mut q = DependencyQueue::new(&deps);
        assert_eq!(q.pop(), Some(1));
    }

    #[test]
    fn drain_stops_unstarted_work() {
        let deps = vec![vec![], vec![], vec![0]];
        let mut q = DependencyQueue::new(&deps);
        let first = q.pop().unwrap();
        let drained = q.drain_unstarted();
        assert!(!drained.contains(&first));
        assert_eq!(drained.len(), 2);
        q.finish(first, true);
        assert!(q.is_idle());
    }
}
