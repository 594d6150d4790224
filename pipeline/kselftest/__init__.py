"""The kernel's own selftests: built from the tree, run in a fresh boot, compared baseline vs patched."""
