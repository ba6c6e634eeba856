"""Engine: training loop, evaluation, metrics, reports, devices and distributed helpers."""
