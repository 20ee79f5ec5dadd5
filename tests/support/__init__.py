"""Helpers shared by the unit, integration and end-to-end tests: throwaway servers, labs, fakes, examples."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project's root
TESTS = ROOT / "tests"  # where data/ (recorded captures) and golden/ (expected files) live
