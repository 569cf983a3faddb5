#!/usr/bin/env python3
"""gen-conf-man.py CONF VERSION > hotgate.conf.5

Writes the hotgate.conf(5) man page from conf/hotgate.conf, the fully commented reference
configuration: the file's opening comment becomes the DESCRIPTION, each [section] a
subsection, each key (active "key = value" or commented "#key = value") an entry with the
comment block above it and its default (the active value; "not set" for a commented one,
whose value is shown as an example). Keys that follow one another under one comment share
it. `--keys` prints "section key" pairs instead (for tests/docs/check_conf_docs.sh).
"""
import re
import sys

# Keys whose value in conf/hotgate.conf is an example, not a default (config.c: required,
# or none when absent).
NO_DEFAULT = {('client', 'key_sha256'): 'required', ('client', 'credential'): 'required',
              ('client', 'workspaces'): 'required', ('client', 'default_workspace'): 'none',
              ('credential', 'token_file'): 'one token source is required',
              ('redis', 'password_file'): 'none (no AUTH)', ('redis', 'sentinel'): 'none',
              ('redis', 'sentinel_master'): 'none'}
KEY_RE = re.compile(r'^(#?)([a-z][a-z0-9_.<>]*)\s*=\s*(.*?)\s*$')
SEC_RE = re.compile(r'^#?\[([a-z]+)(?:\s+([A-Za-z0-9_-]+))?\]\s*$')


def esc(t):
    t = t.replace('\\', '\\\\').replace('-', '\\-')
    if t.startswith('.') or t.startswith("'"):
        t = '\\&' + t
    return t


def parse(path):
    intro, sections = [], []  # sections: [name, label, [groups]]; group: [keys, doc]
    doc, seen_section = [], False
    group = None
    for raw in open(path, encoding='utf-8'):
        line = raw.rstrip('\n')
        m = SEC_RE.match(line)
        if m:
            name = m.group(1)
            label = '[%s%s]' % (name, ' NAME' if m.group(2) else '')
            if not sections or sections[-1][0] != name:
                sections.append([name, label, [], list(doc)])
            doc, group, seen_section = [], None, True
            continue
        if not seen_section:
            if line.startswith('#'):
                intro.append(line[2:].rstrip() if line.startswith('# ') else '')
            continue
        k = KEY_RE.match(line)
        if k and not line.startswith('# '):
            commented, key, value = k.group(1) == '#', k.group(2), k.group(3)
            value = re.sub(r'\s+#.*$', '', value)
            if doc or group is None:
                group = [[], list(doc)]
                sections[-1][2].append(group)
                doc = []
            group[0].append((key, value, commented))
            continue
        if line.startswith('#'):
            if group is not None and not doc and not line.strip('# '):
                continue
            doc.append(line[1:].strip())
            group = None if doc else group
            continue
        if not line.strip():
            if doc:  # a comment not followed by a key: belongs to the next one
                pass
            continue
    return intro, sections


def man(path, version):
    intro, sections = parse(path)
    out = ['.\\" Generated from conf/hotgate.conf by scripts/gen-conf-man.py: edit that file.',
           '.TH HOTGATE.CONF 5 "" "hotgate %s" "File Formats"' % version,
           '.SH NAME', 'hotgate.conf \\- configuration of the hotgate caching gateway',
           '.SH SYNOPSIS', '.I /etc/hotgate/hotgate.conf',
           '.SH DESCRIPTION']
    para = []
    for l in intro[1:]:
        if not l:
            if para:
                out.append('.PP')
                out.extend(x if x == '.br' else esc(x) for x in para)
                para = []
            continue
        if l.startswith(' ') and para:
            para.append('.br')
        para.append(l.strip())
    if para:
        out.append('.PP')
        out.extend(x if x == '.br' else esc(x) for x in para)
    out.append('.PP')
    out.append('Settings of [server], [admin] listen, [upstream], [cache] enabled, dir, size, '
               'high_water, max_entry_size and [redis] take effect at start; on a reload '
               '(SIGHUP) a change to one of them is logged as \\(lqneeds restart\\(rq and left '
               'as it is. Everything else (clients, keys, credentials and their tokens, rates, '
               'classes, queue limits, TTLs, the log level, the admin token) changes on a reload.')
    out.append('.SH SECTIONS AND KEYS')
    for name, label, groups, sdoc in sections:
        out.append('.SS %s' % esc(label))
        if sdoc:
            out.append(' '.join(esc(x) for x in sdoc if x))
        for keys, kdoc in groups:
            first = True
            for key, value, commented in keys:
                out.append('.TP' if first else '.TQ')
                first = False
                if (name, key) in NO_DEFAULT:
                    d = 'default: %s; example: \\fI%s\\fR' % (NO_DEFAULT[(name, key)],
                                                              esc(value))
                elif commented:
                    d = 'not set; example: \\fI%s\\fR' % esc(value) if value else 'not set'
                else:
                    d = 'default: \\fI%s\\fR' % esc(value) if value else 'default: empty'
                out.append('.B %s\n(%s)' % (esc(key), d))
            text = ' '.join(x for x in kdoc if x)
            out.append(esc(text) if text else 'See above.')
    out += ['.SH FILES', '.TP', '.I /etc/hotgate/hotgate.conf', 'this file',
            '.TP', '.I /etc/hotgate/hotdata.token',
            'the upstream token of the shipped [credential main] (mode 0600, owner hotgate)',
            '.SH SEE ALSO', '.BR hotgate (8),', '.BR hotdata\\-sim (1)']
    return '\n'.join(out) + '\n'


def keys(path):
    _, sections = parse(path)
    for name, _, groups, _ in sections:
        for ks, _ in groups:
            for key, _, _ in ks:
                print(name, key)


if __name__ == '__main__':
    if len(sys.argv) >= 3 and sys.argv[1] == '--keys':
        keys(sys.argv[2])
    elif len(sys.argv) == 3:
        sys.stdout.write(man(sys.argv[1], sys.argv[2]))
    else:
        sys.exit('usage: gen-conf-man.py CONF VERSION | --keys CONF')
