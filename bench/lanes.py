import time, sys, numpy as np
from concurrent.futures import ThreadPoolExecutor
from gankit_runtime.contract import open_session, read_model
from gankit_runtime import latents_for_seeds
model = sys.argv[1]; batch = int(sys.argv[2])
data = read_model(model)
z = latents_for_seeds(range(batch * 8), 100)
shared = open_session(data, threads=1)
separate = [open_session(data, threads=1) for _ in range(2)]
name = shared.get_inputs()[0].name
def run(sess, k): return sess.run(None, {name: z[k*batch:(k+1)*batch]})[0]
pool = ThreadPoolExecutor(2)
def measure(sessions, rounds=3):
    best = 0
    for _ in range(rounds):
        t = time.perf_counter()
        for rep in range(3):
            list(pool.map(lambda k: run(sessions[k % 2], k), range(8)))
        rate = 3 * 8 * batch / (time.perf_counter() - t)
        best = max(best, rate)
    return best
for r in range(3):
    a = measure([shared, shared]); b = measure(separate)
    print(f"shared 2 lanes {a:.0f} img/s, 2 sessions {b:.0f} img/s, ratio {a/b:.3f}")
