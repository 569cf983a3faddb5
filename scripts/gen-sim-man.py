#!/usr/bin/env python3
"""gen-sim-man.py HOTDATA_SIM VERSION > hotdata-sim.1

Writes the hotdata-sim(1) man page from the simulator's own --help text (so the page lists
exactly the flags the binary takes), plus a description and pointers.
"""
import re
import subprocess
import sys


def esc(t):
    t = t.replace('\\', '\\\\').replace('-', '\\-')
    return '\\&' + t if t.startswith(('.', "'")) else t


def main(binary, version):
    help_text = subprocess.run([binary, '--help'], capture_output=True, text=True,
                               check=True).stdout
    lines = help_text.splitlines()
    out = ['.\\" Generated from `hotdata-sim --help` by scripts/gen-sim-man.py.',
           '.TH HOTDATA-SIM 1 "" "hotgate %s" "User Commands"' % version,
           '.SH NAME', 'hotdata\\-sim \\- local simulator of the Hotdata /v1 API',
           '.SH SYNOPSIS']
    i = 0
    syn = []
    while i < len(lines) and lines[i].strip():
        syn.append(re.sub(r'^usage:\s*', '', lines[i]).strip())
        i += 1
    out.append('.B ' + esc(' '.join(syn)))
    out += ['.SH DESCRIPTION',
            'A stand\\-in for the Hotdata /v1 API for development, tests, benchmarks and the '
            'demo of hotgate: real SQL (SQLite over seeded demo data), query runs and results, '
            'async lifecycles on timers, uploads, datasets, a per\\-token rate limit and runtime '
            'fault injection on its control plane (/_sim/stats, /_sim/reset, /_sim/faults).',
            '.SH OPTIONS']
    opt = None
    for line in lines[i:]:
        if not line.strip():
            continue
        m = re.match(r'^\s{2}(--\S+(?: [A-Z][A-Z0-9_.,=\[\]]*)?)\s{2,}(.*)$', line)
        if m:
            out += ['.TP', '.B ' + esc(m.group(1)), esc(m.group(2))]
            opt = True
            continue
        if not line.startswith(' ') and line.rstrip().endswith(':'):
            out.append('.SS ' + esc(line.strip().rstrip(':')))
            opt = None
            continue
        if line.startswith('  --'):  # a flag whose text starts on the next line
            out += ['.TP', '.B ' + esc(line.strip())]
            opt = True
            continue
        out.append(esc(line.strip()) if opt else '.PP\n' + esc(line.strip()))
    out += ['.SH SEE ALSO', '.BR hotgate (8),', '.BR hotgate.conf (5);',
            'sim/README.md in the hotgate sources for the differences from the live service.']
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: gen-sim-man.py HOTDATA_SIM VERSION')
    main(sys.argv[1], sys.argv[2])
