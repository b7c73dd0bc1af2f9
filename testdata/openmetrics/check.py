"""Reads an OpenMetrics exposition on stdin and fails unless the strict
parser of the Python prometheus_client (Debian's python3-prometheus-client)
accepts all of it. Prints the number of families it read."""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = list(text_string_to_metric_families(sys.stdin.read()))
print(len(families))
