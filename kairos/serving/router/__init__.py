"""The router process: HTTP front end, dispatcher around the Driver, metrics, traffic window."""
