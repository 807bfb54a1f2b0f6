// The commit counters behind `journal::stats`: written by the writer thread
// (count_commit after each commit; writer_loop.cpp, head_cache.cpp and
// compaction.cpp bump the failure, map-growth, fold and compaction
// counters where those happen), read by any thread with relaxed loads.
//
// Defines, of journal::impl: stats (its reading and count_commit).

#include "mnemo/persistence/journal.hpp"

#include <algorithm>

#include "journal_impl.hpp"

namespace mnemo::persistence {

journal_stats journal::stats() const noexcept {
  auto& c = impl_->stats;
  auto get = [](const std::atomic<uint64_t>& x) {
    return x.load(std::memory_order_relaxed);
  };
  journal_stats result;
  result.commits = get(c.commits);
  result.failed_commits = get(c.failed_commits);
  result.requests = get(c.requests);
  result.events = get(c.events);
  result.map_grows = get(c.map_grows);
  result.compactions = get(c.compactions);
  result.head_folds = get(c.head_folds);
  result.commit_us_sum = get(c.commit_us_sum);
  for (size_t i = 0; i < result.batch_events.size(); ++i)
    result.batch_events[i] = get(c.batch_events[i]);
  for (size_t i = 0; i < result.commit_us.size(); ++i)
    result.commit_us[i] = get(c.commit_us[i]);
  return result;
}

namespace {

template <size_t N, class Array>
void count_in(const std::array<uint64_t, N>& bounds, Array& buckets,
              uint64_t value) {
  auto i = static_cast<size_t>(
      std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  buckets[i].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void journal::impl::count_commit(size_t requests, uint64_t events) {
  stats.commits.fetch_add(1, std::memory_order_relaxed);
  stats.requests.fetch_add(requests, std::memory_order_relaxed);
  stats.commit_us_sum.fetch_add(last_commit_us, std::memory_order_relaxed);
  count_in(journal_stats::commit_bounds_us, stats.commit_us, last_commit_us);
  if (events == 0) return;
  stats.events.fetch_add(events, std::memory_order_relaxed);
  count_in(journal_stats::batch_bounds, stats.batch_events, events);
}

}  // namespace mnemo::persistence
