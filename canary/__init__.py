"""Who serves each route: the canary controller, its loop and store, drift acting on it."""
