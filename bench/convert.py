"""Benchmark ``deepke-llm convert`` on an IEPile-scale relation-extraction input.

Generates N raw RE records over 49 relations (split_num 4, so 12 instructions per record, as IEPile's RE
data), then measures, each in a fresh process so peak memory is its own:

* ``floor``     – read the converter's output and do a plain ``json.loads`` + ``json.dumps`` of every line,
                  writing it out: the least work any converter producing that file must do;
* ``convert``   – ``deepke-llm convert`` in one process;
* ``convert-w2``– the same with ``--workers 2``.

Printed as records/s, seconds, ratio to the floor (lower is better; goals: <= 1.6x in one process,
<= 1.0x with two workers) and peak RSS (goal: under 150 MB whatever the input size; pass two sizes to see
that it stays flat)::

    python bench/convert.py --records 200000
    python bench/convert.py --records 50000 200000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RELATIONS = [f"关系{i:02d}" for i in range(49)]
CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def make_input(path: Path, records: int, seed: int = 0) -> None:
    """IEPile-like RE records: 60–160 characters of text, 1–3 triples whose strings occur in it."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(records):
            text = "".join(rng.choice(CHARS) for _ in range(rng.randint(60, 160)))
            relation = []
            for _ in range(rng.randint(1, 3)):
                i, j = sorted(rng.sample(range(len(text) - 4), 2))
                relation.append({"head": text[i:i + 3], "relation": rng.choice(RELATIONS), "tail": text[j:j + 4]})
            out.write(json.dumps({"text": text, "relation": relation}, ensure_ascii=False) + "\n")


def floor(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as inp, open(dst, "w", encoding="utf-8") as out:
        for line in inp:
            out.write(json.dumps(json.loads(line), ensure_ascii=False) + "\n")


def child(argv: list[str]) -> None:
    """Run one measured job in this process and print its seconds and peak RSS (self + children) as JSON."""
    kind, src, dst, schema = argv[:4]
    start = time.perf_counter()
    if kind == "floor":
        floor(src, dst)
    else:
        from deepke_llm_core.convert import ConvertConfig, convert_file

        convert_file(ConvertConfig(src_path=src, tgt_path=dst, schema_path=schema, task="RE", split_num=4,
                                   workers=2 if kind == "convert-w2" else 1, progress=False))
    seconds = time.perf_counter() - start
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))


def digest(path: Path) -> str:
    """SHA-256 of a file, streamed (reading a GB-sized output whole would inflate the next child's peak RSS:
    a forked child starts with its parent's)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def measure(kind: str, src: Path, dst: Path, schema: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(src), str(dst), str(schema)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[200_000])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        schema = root / "schema.json"
        schema.write_text("[]\n" + json.dumps(RELATIONS, ensure_ascii=False) + "\n{}\n", encoding="utf-8")
        print(f"{'records':>8} {'job':<11} {'records/s':>10} {'seconds':>8} {'x floor':>8} {'peak MB':>8}")
        for n in args.records:
            src = root / "RE" / f"input_{n}.json"
            src.parent.mkdir(exist_ok=True)
            make_input(src, n)
            converted = root / f"out_{n}.json"
            results = {"convert": measure("convert", src, converted, schema)}
            results["floor"] = measure("floor", converted, root / "floor.json", schema)
            results["convert-w2"] = measure("convert-w2", src, root / "out_w2.json", schema)
            assert digest(root / "out_w2.json") == digest(converted), "workers changed the output"
            base = results["floor"]["seconds"]
            for job in ("floor", "convert", "convert-w2"):
                r = results[job]
                print(f"{n:>8} {job:<11} {n / r['seconds']:>10.0f} {r['seconds']:>8.2f} {r['seconds'] / base:>8.2f} {r['peak_mb']:>8.1f}")
            for path in (src, converted, root / "floor.json", root / "out_w2.json"):
                path.unlink()


if __name__ == "__main__":
    main()
