"""ksm-harness: drive Linux KSM on real kernels from scenario files."""
