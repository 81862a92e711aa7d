"""The pages' one stylesheet (inlined: the pages load nothing) and the lanes' colours, which the charts share."""
from __future__ import annotations

from serving.selection import GREEN, RED, YELLOW

COLOURS = {RED: "#c0392b", YELLOW: "#e2b007", GREEN: "#2e8b57"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#17324d;color:#fff;padding:14px 28px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0} header span{opacity:.85}
main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #d9dee4;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:2px 0 10px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px} th,td{border-bottom:1px solid #e3e7eb;padding:4px 10px;text-align:left}
th{background:#eef1f4;font-weight:600} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.lane{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-weight:600}
.lane-red{background:#c0392b}.lane-yellow{background:#e2b007;color:#1d2733}.lane-green{background:#2e8b57}
.empty{color:#55606c;font-style:italic} .note{color:#55606c} .warn{background:#fff4d6;border-color:#e2b007}
code{background:#eef1f4;padding:1px 4px;border-radius:3px}
form{display:flex;gap:8px;align-items:center} input[type=text]{padding:5px 8px;width:260px;font:inherit}
button{padding:5px 14px;font:inherit;background:#17324d;color:#fff;border:0;border-radius:4px}
.grid{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start} svg text{font:11px system-ui,sans-serif;fill:#1d2733}
details summary{cursor:pointer;color:#17324d}
"""
