//! The test and measurement programs: the conformance suite (`suite=conformance`, dom0), the
//! hostile domUs (`hostile=<name>`), the hypercall fuzzer (`fuzz=`), the benchmarks (`bench=`),
//! the page-table lab (`lab=`) and the page-table workload both of those drive.

pub mod bench;
pub mod conformance;
pub mod fuzz;
pub mod hostile;
pub mod lab;
pub mod pt_workload;
