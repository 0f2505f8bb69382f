"""The listening server: acceptance rules, dispatch to the services, privileges, systemd."""
