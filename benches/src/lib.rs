//! sextant-benches: a realistic LLM-call workload generator and load tools.
