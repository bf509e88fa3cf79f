// Minimal fork-join over an index range: the calling thread takes the first share, at most n_threads - 1
// helper threads take the rest. Used for batches of independent faces/crops; no work is shared mid-item.
#pragma once

#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace crres {

// Resolve a user thread count: 0 means one per hardware thread; never more threads than items.
inline int resolve_threads(int requested, std::size_t items) {
    int n = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(n), std::max<std::size_t>(items, 1)));
    return std::max(n, 1);
}

// fn(begin, end, worker_index) processes items [begin, end); worker_index < n_threads selects scratch space.
template <typename Fn>
void parallel_for(std::size_t items, int n_threads, Fn&& fn) {
    if (items == 0) return;
    const std::size_t workers = static_cast<std::size_t>(resolve_threads(n_threads, items));
    if (workers == 1) {
        fn(std::size_t{0}, items, 0);
        return;
    }
    const std::size_t chunk = (items + workers - 1) / workers;
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    for (std::size_t w = 1; w < workers; ++w) {
        const std::size_t begin = w * chunk, end = std::min(items, begin + chunk);
        if (begin >= end) break;
        pool.emplace_back([&fn, begin, end, w] { fn(begin, end, static_cast<int>(w)); });
    }
    fn(std::size_t{0}, std::min(items, chunk), 0);
    for (std::thread& t : pool) t.join();
}

}  // namespace crres
