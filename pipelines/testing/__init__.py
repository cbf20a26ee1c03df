"""Test and benchmark kit, shipped with the package so bench/ and tests/ share it: tiny models and
projects (tiny), real CLI runs (cli_runs, kill_resume), what runs leave behind (run_outputs, mlflow_runs),
handler fuzzing (fuzz, handler_runs) and bad pipeline files (bad_inputs)."""
