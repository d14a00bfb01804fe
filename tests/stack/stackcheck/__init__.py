"""Offline checks of the Docker Compose and Grafana stack files."""
