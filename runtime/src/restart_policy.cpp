#include "mnemo/runtime/restart_policy.hpp"

#include <algorithm>

namespace mnemo::runtime {

std::chrono::milliseconds backoff_delay(const restart_policy& policy,
                                        size_t k) noexcept {
  auto delay = std::max(policy.min_backoff, std::chrono::milliseconds{0});
  for (size_t i = 1; i < k && delay < policy.max_backoff; ++i) delay *= 2;
  return std::min(delay, policy.max_backoff);
}

void restart_tracker::prune(time_point now, const restart_policy& policy) {
  auto first =
      std::find_if(failures_.begin(), failures_.end(),
                   [&](time_point t) { return now - t < policy.within; });
  failures_.erase(failures_.begin(), first);
}

bool restart_tracker::record(time_point now, const restart_policy& policy) {
  prune(now, policy);
  failures_.push_back(now);
  return failures_.size() <= policy.max_restarts;
}

std::optional<std::chrono::milliseconds> restart_tracker::on_failure(
    time_point now, const restart_policy& policy, std::mt19937_64& rng) {
  if (!record(now, policy)) return std::nullopt;
  auto base = backoff_delay(policy, failures_.size());
  auto jitter = std::max(policy.jitter, 0.0);
  std::uniform_real_distribution<double> factor{1.0, 1.0 + jitter};
  auto scaled = static_cast<double>(base.count()) * factor(rng);
  return std::chrono::milliseconds{static_cast<int64_t>(scaled)};
}

size_t restart_tracker::failures(time_point now, const restart_policy& policy) {
  prune(now, policy);
  return failures_.size();
}

restart_tracker::time_point restart_tracker::window_end(
    time_point now, const restart_policy& policy) const {
  auto n = failures_.size();
  if (n < std::max<size_t>(policy.max_restarts, 1)) return now;
  // A restart is allowed once at most max_restarts - 1 failures remain in
  // the window, i.e. once failure n - max_restarts has left it.
  auto pivot = std::min(n - policy.max_restarts, n - 1);
  return std::max(failures_[pivot] + policy.within, now);
}

bool restart_tracker::idle(time_point now, const restart_policy& policy) {
  return failures(now, policy) == 0;
}

}  // namespace mnemo::runtime
