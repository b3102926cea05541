"""The kairos policy: the QoS-aware matching, its fast paths and tables."""
