#!/usr/bin/env python3
"""Writes docs/performance.md from the results bench/run.sh left in DIR.

report.py DIR [PREVIOUS]: sections and target rows that other benchmark
scripts added to PREVIOUS (the document as it was) are kept."""
import json, os, platform, re, statistics, subprocess, sys, datetime

d = sys.argv[1]

def load(name):
    with open(os.path.join(d, name)) as f:
        return {r["command"]: r["times"] for r in json.load(f)["results"]}

def med(ts): return statistics.median(ts)

def row(name, ts, base):
    m = med(ts)
    return f"| {name} | {m:.3f} | {min(ts):.3f}–{max(ts):.3f} | {m / base:.2f}× |"

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"

cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
aes = "AES-NI" if "aes" in sh("grep -m1 flags /proc/cpuinfo").split() else "no AES-NI"
mem = sh("free -g | awk '/Mem:/{print $2}'")
machine = (f"{cpu} ({aes}), {os.cpu_count()} cores, {mem} GiB, "
           f"kernel {platform.release()}, {sh('go version').replace('go version ', '')}; "
           f"data on tmpfs (/dev/shm); {datetime.date.today().isoformat()}")

rounds = []
for line in open(os.path.join(d, "big.tsv")):
    if line.strip():
        rounds.append({k: float(v) for k, v in (f.split("=") for f in line.split())})
names = {"cp": "cp", "floor": "map → AES-GCM → write, nothing else (bench/floor)", "holdfast_ls_s": "holdfast ls (session)", "holdfast_put_s": "holdfast put (session)",
         "holdfast_get_s": "holdfast get (session)",
         "holdfast_ls": "holdfast ls (passphrase: key derivation + open)", "holdfast_put": "holdfast put (passphrase)",
         "holdfast_get": "holdfast get (passphrase)", "age_e": "age -e",
         "age_d": "age -d", "rclone_crypt_up": "rclone crypt up", "rclone_crypt_down": "rclone crypt down",
         "restic_backup": "restic backup", "restic_restore": "restic restore"}
big = {names[k]: [r[k] for r in rounds] for k in names if rounds and k in rounds[0]}
bigratio = {names[k]: [r[k] / r["cp"] for r in rounds] for k in names if rounds and k in rounds[0]}
tree = load("tree.json")
cp = med(big["cp"])
out = []
w = out.append
w("# Performance")
w("")
w("Produced by `make bench` (bench/run.sh) — every number below comes from one run")
w("on the machine named here; the ratios compare commands measured in that same run.")
w("The machines are shared virtual machines whose memory and system-call costs vary a")
w("lot from run to run (writing 1 GiB into fresh tmpfs pages alone varies about 2×),")
w("so read the ratios, and the spread, rather than the absolute times.")
w("")
w(f"**Machine:** {machine}.")
w("")
w("## 1 GiB file, local store on tmpfs")
w("")
w("Holdfast runs with production key-derivation parameters (calibrated by `init`), twice")
w("per round: in an unlocked session (`holdfast unlock` derived the keyring key once, before")
w("the timing; each command takes it from the kernel), and with the passphrase, where every")
w("command pays one Argon2id derivation. age uses an X25519 recipient (no KDF); rclone uses a")
w("crypt remote over a local directory; restic derives its key (scrypt) on every command.")
w("")
w(f"Each of {len(rounds)} rounds runs every command once, back to back; the ratio column is")
w("the median over rounds of (command ÷ cp in the same round), with its range.")
w("")
w("| command | median s | min–max s | × cp (median of rounds) | × cp range |")
w("|---|---|---|---|---|")
for name in ["cp", names["floor"]] + [names[k] for k in ["holdfast_ls_s", "holdfast_put_s", "holdfast_get_s", "holdfast_ls", "holdfast_put", "holdfast_get"]] + ["age -e", "age -d", "rclone crypt up", "rclone crypt down", "restic backup", "restic restore"]:
    if name in big:
        ts, rs = big[name], bigratio[name]
        w(f"| {name} | {med(ts):.3f} | {min(ts):.3f}–{max(ts):.3f} | {med(rs):.2f}× | {min(rs):.2f}–{max(rs):.2f} |")
w("")
if names["holdfast_ls"] in big:
    ls, lss = big[names["holdfast_ls"]], big[names["holdfast_ls_s"]]
    w(f"With the passphrase, every Holdfast command first derives the keyring key (Argon2id, below):")
    w(f"`holdfast ls` then takes {med(ls):.2f} s, against {med(lss):.3f} s in a session. The session")
    w("rows are what a user working through a series of commands sees, and what a long-running")
    w("process (`holdfast serve`, `sync`) sees after its one derivation.")
    w("")
kdf = open(os.path.join(d, "kdf.hex")).read().strip()
t, m, p = int(kdf[0:8], 16), int(kdf[8:16], 16), int(kdf[16:18], 16)
rss = dict(re.findall(r"^(holdfast \w+) (\d+)$", open(os.path.join(d, "rss.txt")).read(), re.M))
argon_mib = m / 1024
w(f"Key derivation: Argon2id t={t}, m={argon_mib:.0f} MiB, p={p} (`holdfast ls`, which does little else, "
  f"takes the derivation's time: see the 10,000-file table).")
w("")
rss = dict(re.findall(r"^(.+?) (\d+)$", open(os.path.join(d, "rss.txt")).read(), re.M))
w("| peak RSS, 1 GiB | KiB | MiB | bound for Holdfast (Argon2 memory + 48 MiB) |")
w("|---|---|---|---|")
for k in ["holdfast put (session)", "holdfast get (session)", "holdfast put", "holdfast get", "holdfast ls", "cp", "age -e", "age -d", "rclone crypt up", "rclone crypt down", "restic backup", "restic restore"]:
    if k in rss:
        v = int(rss[k])
        bound = f"{argon_mib + 48:.0f} MiB: {'met' if v / 1024 <= argon_mib + 48 else 'NOT met'}" if k.startswith("holdfast") else ""
        w(f"| {k} | {v} | {v / 1024:.1f} | {bound} |")
w("")
w("## 10,000 files of 4 KiB")
w("")
cpr = med(tree["cp -r"])
w("| command | median s | min–max s | × cp -r | files/s |")
w("|---|---|---|---|---|")
for name in ["cp -r", "holdfast put -r (session)", "holdfast put -r", "holdfast ls (10,000)", "rclone crypt up", "rclone crypt ls (10,000)"]:
    if name in tree:
        ts = tree[name]
        fps = "" if "ls" in name else f"{10000 / med(ts):,.0f}"
        w(f"{row(name, ts, cpr)} {fps} |")
w("")
s3targets = []
if os.path.exists(os.path.join(d, "s3big.tsv")):
    s3r = []
    for line in open(os.path.join(d, "s3big.tsv")):
        if line.strip():
            s3r.append({k: float(v) for k, v in (f.split("=") for f in line.split())})
    prm = {"size_mib": "1024", "files": "10000"}
    if os.path.exists(os.path.join(d, "s3params")):
        prm.update(f.split("=") for f in open(os.path.join(d, "s3params")).read().split())
    s3mib, s3files = int(prm["size_mib"]), int(prm["files"])
    s3size = f"{s3mib // 1024} GiB" if s3mib % 1024 == 0 else f"{s3mib} MiB"
    w("## Through S3 (versitygw on 127.0.0.1, HTTPS)")
    w("")
    w(f"Holdfast and the AWS CLI (`aws s3 cp`, Debian's awscli) move the same {s3size} file to and from")
    w("the same versitygw server over TLS, interleaved round by round. Throughput ratio = AWS CLI")
    w("time ÷ Holdfast time in the same round (above 1: Holdfast is faster); Holdfast also encrypts,")
    w("and its times include key derivation (`holdfast ls` row).")
    w("")
    w("| command | median s | min–max s |")
    w("|---|---|---|")
    lab = {"aws_up": "aws s3 cp (up)", "holdfast_put": "holdfast put", "aws_down": "aws s3 cp (down)",
           "holdfast_get": "holdfast get", "holdfast_ls": "holdfast ls (key derivation + open)"}
    for k, n in lab.items():
        ts = [r[k] for r in s3r]
        w(f"| {n} | {med(ts):.3f} | {min(ts):.3f}–{max(ts):.3f} |")
    w("")
    up = [r["aws_up"] / r["holdfast_put"] for r in s3r]
    down = [r["aws_down"] / r["holdfast_get"] for r in s3r]
    w(f"Throughput of Holdfast relative to the AWS CLI (median of rounds, range): put {med(up):.2f}× "
      f"({min(up):.2f}–{max(up):.2f}), get {med(down):.2f}× ({min(down):.2f}–{max(down):.2f}).")
    w("")
    s3targets.append((f"S3 put {s3size} ≥ 0.9 × `aws s3 cp` throughput", f"{med(up):.2f} ×", med(up) >= 0.9))
    s3targets.append((f"S3 get {s3size} ≥ 0.9 × `aws s3 cp` throughput", f"{med(down):.2f} ×", med(down) >= 0.9))
    rs = re.findall(r"^s3 (put|get) (\d+)GiB (\d+) ([\d.]+)$", open(os.path.join(d, "s3rss.txt")).read(), re.M)
    kdf3 = open(os.path.join(d, "s3kdf.hex")).read().strip()
    am = int(kdf3[8:16], 16) / 1024
    w(f"| streaming from/to a pipe | size | peak RSS MiB | seconds | bound (Argon2 {am:.0f} MiB + 100 MiB) |")
    w("|---|---|---|---|---|")
    for op, gib, kib, sec in rs:
        v = int(kib) / 1024
        w(f"| {op} | {gib} GiB | {v:.1f} | {float(sec):.1f} | {'met' if v <= am + 100 else 'NOT met'} |")
        if op == "put":
            s3targets.append((f"peak RSS of a {gib} GiB streaming S3 put ≤ Argon2 memory + 100 MiB", f"{v:.0f} MiB (Argon2 {am:.0f} MiB)", v <= am + 100))
    w("")
    if os.path.exists(os.path.join(d, "s3tree.json")):
        st = load("s3tree.json")
        w(f"| {s3files:,} files of 4 KiB | median s | min–max s | files/s |")
        w("|---|---|---|---|")
        for name in ["aws s3 sync up", "holdfast sync up", "aws s3 ls --recursive", "holdfast ls"]:
            if name in st:
                ts = st[name]
                fps = f"{s3files / med(ts):,.0f}" if "sync" in name else ""
                w(f"| {name} | {med(ts):.3f} | {min(ts):.3f}–{max(ts):.3f} | {fps} |")
        w("")
w("## Encryption versus raw AES-256-GCM (Go benchmarks)")
w("")
bench, paired = {}, {}
for line in open(os.path.join(d, "gobench.txt")):
    mm = re.match(r"^(Benchmark\S+?)(-\d+)?\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) MB/s", line)
    if mm:
        bench.setdefault(mm.group(1), []).append(float(mm.group(3)))
    mm = re.match(r"^(Benchmark\S+?)(-\d+)?\s.*?([\d.]+) stream/raw", line)
    if mm:
        paired.setdefault(mm.group(1), []).append(float(mm.group(3)))
if os.path.exists(os.path.join(d, "openssl.txt")):
    mm = re.search(r"([\d.]+)k\s*$", open(os.path.join(d, "openssl.txt")).read().strip())
    if mm:
        bench["openssl speed -evp aes-256-gcm (64 KiB)"] = [float(mm.group(1)) * 1000 / 1e6]
w("`-2` is GOMAXPROCS; the `Raw*` and `Stream*` benchmarks use one goroutine, so one core;")
w("`openssl speed` (one process, 3 s) is the physical limit of the same cipher on this CPU.")
w("")
w("| benchmark | median MB/s | runs |")
w("|---|---|---|")
for k in sorted(bench):
    w(f"| {k} | {med(bench[k]):,.0f} | {len(bench[k])} |")
w("")
def ratio(a, b):
    return med(bench[a]) / med(bench[b]) if a in bench and b in bench else float("nan")
# The targets come from the paired benchmarks (stream and raw AES-GCM
# alternating on the same segment) when the run has them: the separate
# benchmarks run seconds apart, and this machine's speed drifts by more
# than the margin being measured.
seal = med(paired["BenchmarkSealVsRaw"]) if "BenchmarkSealVsRaw" in paired else ratio("BenchmarkStreamSeal/segment=4MiB", "BenchmarkRawSeal64K")
opn = med(paired["BenchmarkOpenVsRaw"]) if "BenchmarkOpenVsRaw" in paired else ratio("BenchmarkStreamOpen", "BenchmarkRawOpen64K")
if paired:
    w("`BenchmarkSealVsRaw` and `BenchmarkOpenVsRaw` alternate the chunk stream and raw")
    w("AES-256-GCM on the same 4 MiB segment and buffers, one segment of each in turn, and")
    w("report the stream's throughput over raw's; the targets below are their medians:")
    w("")
    w("| paired benchmark | stream ÷ raw AES-GCM, median | range | runs |")
    w("|---|---|---|---|")
    for k in sorted(paired):
        w(f"| {k} | {med(paired[k]):.2f} | {min(paired[k]):.2f}–{max(paired[k]):.2f} | {len(paired[k])} |")
    w("")
w("`BenchmarkStream*` run the format's chunk stream (64 KiB chunks, counter and final flag")
w("in the nonce, one HKDF segment key per 4 MiB segment) on one core; `BenchmarkRaw*` seal")
w("or open the same 64 KiB chunks with AES-256-GCM directly. `BenchmarkSealStream*` and")
w("`BenchmarkOpenStream` in internal/object run the whole object pipeline in memory (input")
w("copy, parallel segments, padding, manifest); `…Parallel` uses both cores.")
w("")
if os.path.exists(os.path.join(d, "gohot.txt")):
    hot = {}
    for line in open(os.path.join(d, "gohot.txt")):
        mm = re.match(r"^(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$", line)
        if mm:
            hot.setdefault(mm.group(1), []).append(float(mm.group(3)))
    w("## Hot paths outside the cipher (Go benchmarks)")
    w("")
    w("Parsing and marshalling the format's records, the catalog's commits, lookups and")
    w("listings (SQLite, WAL, synchronous=FULL), and name handling; median of 5 runs.")
    w("`bench/compare.sh OLD NEW` runs these at two revisions and compares them with benchstat,")
    w("for any change that claims a speed-up.")
    w("")
    w("| benchmark | median ns/op | runs |")
    w("|---|---|---|")
    for k in sorted(hot):
        w(f"| {k} | {med(hot[k]):,.0f} | {len(hot[k])} |")
    w("")
w("## Targets")
w("")
w("| target | measured | met |")
w("|---|---|---|")
put, get = med(bigratio[names["holdfast_put_s"]]), med(bigratio[names["holdfast_get_s"]])
putp, getp = med(bigratio[names["holdfast_put"]]), med(bigratio[names["holdfast_get"]])
w(f"| stream encrypt ≥ 0.90 × raw AES-256-GCM seal | {seal:.2f} × | {'yes' if seal >= 0.9 else 'no'} |")
w(f"| stream decrypt ≥ 0.90 × raw AES-256-GCM open | {opn:.2f} × | {'yes' if opn >= 0.9 else 'no'} |")
w(f"| `holdfast put` 1 GiB ≤ 1.25 × `cp` (session) | {put:.2f} × | {'yes' if put <= 1.25 else 'no'} |")
w(f"| `holdfast get` 1 GiB ≤ 1.40 × `cp` (session) | {get:.2f} × | {'yes' if get <= 1.4 else 'no'} |")
w(f"| `holdfast put` 1 GiB ≤ 1.25 × `cp` (passphrase, one Argon2id per command) | {putp:.2f} × | {'yes' if putp <= 1.25 else 'no'} |")
w(f"| `holdfast get` 1 GiB ≤ 1.40 × `cp` (passphrase, one Argon2id per command) | {getp:.2f} × | {'yes' if getp <= 1.4 else 'no'} |")
for k in ["holdfast put", "holdfast get", "holdfast put (session)", "holdfast get (session)"]:
    if k in rss:
        v = int(rss[k]) / 1024
        w(f"| peak RSS of {k[len('holdfast '):]} ≤ Argon2 memory + 48 MiB | {v:.0f} MiB (Argon2 {argon_mib:.0f} MiB) | {'yes' if v <= argon_mib + 48 else 'no'} |")
fps = 10000 / med(tree["holdfast put -r (session)"])
w(f"| `put -r` of 10,000 × 4 KiB ≥ 20,000 files/s (goal) | {fps:,.0f} files/s | {'yes' if fps >= 20000 else 'no'} |")
for name, meas, ok in s3targets:
    w(f"| {name} | {meas} | {'yes' if ok else 'no'} |")
w("")
w("## What bounds these numbers")
w("")
w("- **Key derivation.** Without a session every command derives the keyring key once:")
w("  Argon2id with 64 MiB, time cost calibrated by `init` to about half a second on the")
w("  machine (the passphrase `holdfast ls` row). That fixed cost is as large as `cp` of 1 GiB")
w("  itself, so no command that pays it can come near 1.25× `cp`; `holdfast unlock` pays it")
w("  once per session, and a long-running process (`holdfast serve`, `sync`) once per run.")
w("- **Copies.** `cp` copies inside the kernel (copy_file_range). `holdfast put` of a file")
w("  over 4 MiB maps it read-only a segment at a time and encrypts straight from the page")
w("  cache on both cores, then writes the ciphertext: one kernel copy plus one pass of")
w("  AES-GCM (reading the file into the process first, as it did until 2026-11-28, was a")
w("  sixth of its CPU time). `holdfast get` from a local store maps the stored object too,")
w("  but copies each 64 KiB chunk out of the mapping before authenticating it (the")
w("  provider's pages could change between GCM's two passes over them): the copy stays in")
w("  cache instead of passing through a 4 MiB buffer (docs/design.md §12). The write into")
w("  the store or output file is the serial part (tmpfs takes the file's lock for each")
w("  write), and it costs what `cp` costs; encrypting runs beside it on the other core.")
w("  Encrypting into a mapped output file as well was tried and measured")
w("  slower here: faulting in and zeroing fresh tmpfs pages one by one costs more than the")
w("  write's copy. On these virtual machines writing fresh tmpfs pages varies about twofold")
w("  from run to run, which is why the ratios above are medians of per-round ratios.")
if names["floor"] in bigratio:
    fl = med(bigratio[names["floor"]])
    over = med([r["holdfast_put_s"] / r["floor"] for r in rounds])
    w(f"- **The floor.** `bench/floor` does only what every encrypting copy must: it maps the")
    w(f"  file in 4 MiB pieces, seals them with AES-256-GCM in 64 KiB chunks on both cores and")
    w(f"  writes them in order — no keys, catalog, manifest or padding. In this run it")
    w(f"  took {fl:.2f}× `cp` (median of rounds), and `holdfast put` (session) took {over:.2f}× the")
    w(f"  floor: the put target of 1.25× `cp` is {'within' if fl <= 1.25 else 'below'} what reading, encrypting and")
    w(f"  writing cost on this machine, whatever the format does.")
w("- **Small files.** Each file costs an open and a read of the source, a temporary file,")
w("  a write, a rename and two catalog rows (batched 512 to a transaction, with one syncfs")
w("  per batch instead of an fsync per file): about 110 µs of CPU per file on these machines,")
w("  of which a profile (2026-11-28) puts 45% in the kernel (those system calls), a quarter")
w("  in SQLite and 8% in the garbage collector. Two changes of that day took 13% of the CPU")
w("  off: files are opened and renamed without the extra calls package os makes (it registers")
w("  each file with the network poller, four calls, and looks a rename's target up first;")
w("  `internal/regfile`), and the four keys of an object share one HKDF extract step instead")
w("  of computing it four times. Giving the garbage collector four times the headroom")
w("  (GOGC=400) would save another 5% of CPU for 35 MiB more peak memory, and was left out.")
w("")


def sections(lines):
    """Splits a document into [heading, lines] pairs at its "## " lines."""
    secs = [["", []]]
    for line in lines:
        if line.startswith("## "):
            secs.append([line, []])
        secs[-1][1].append(line)
    return secs


def carry_over(out, old_path):
    """Keeps what other benchmark scripts wrote into the previous document
    by hand: sections this report does not write (each after the section
    it followed there) and rows of the targets table it does not write."""
    if not old_path or not os.path.exists(old_path):
        return out
    old, new = sections(open(old_path).read().split("\n")), sections(out)
    made = {h for h, _ in new}
    rows = {l.split(" | ")[0] for h, ls in new if h == "## Targets" for l in ls if l.startswith("| ")}
    for i, (h, ls) in enumerate(old):
        if h == "## Targets":
            extra = [l for l in ls if l.startswith("| ") and l.split(" | ")[0] not in rows]
            for nh, nls in new:
                if nh == h:
                    last = max(j for j, l in enumerate(nls) if l.startswith("| "))
                    nls[last + 1:last + 1] = extra
        elif h and h not in made:
            after = next((old[j][0] for j in range(i - 1, -1, -1) if old[j][0] in made), "")
            at = next(j for j, (nh, _) in enumerate(new) if nh == after) + 1
            while at < len(new) and new[at][0] not in made:  # after those carried already
                at += 1
            new.insert(at, [h, ls])
    return [l for _, ls in new for l in ls]


print("\n".join(carry_over(out, sys.argv[2] if len(sys.argv) > 2 else None)))
