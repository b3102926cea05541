"""The demos behind kairos demo --live and kairos demo --real."""
