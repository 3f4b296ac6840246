"""wrk --latency output on stdin -> one line: req/s p50_ms p99_ms max_ms errors."""
import re
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(value: str) -> float:
    number = re.match(r"[\d.]+", value).group()
    return float(number) * UNITS[value[len(number):]]


text = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
worst = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
socket = re.search(r"Socket errors: (.*)", text)
errors = int(non2xx.group(1)) if non2xx else 0
if socket:
    errors += sum(int(n) for n in re.findall(r"\d+", socket.group(1)))
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {worst:.2f} {errors}")
