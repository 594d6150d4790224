"""pipeline bench: the cgroup pool benchmark (guest program in bench/guest/)."""
