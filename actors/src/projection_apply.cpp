#include "projection_apply.hpp"

#include <algorithm>

namespace mnemo::actors::detail {

namespace {

persistence::error fail_at(size_t index, bool whole_group,
                           persistence::error err,
                           std::optional<apply_failure>& failed) {
  failed = apply_failure{index, whole_group, err.message()};
  return err;
}

}  // namespace

persistence::error apply_events(persistence::write_txn& txn,
                                const envelopes& batch,
                                const exactly_once_apply& apply,
                                const projection_filter& filter, bool singly,
                                std::optional<apply_failure>& failed) {
  failed.reset();
  if (apply.each || singly) {
    envelopes one(apply.each ? 0 : 1);
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& env = batch[i];
      if (!filter.matches(env)) continue;
      persistence::error err;
      if (apply.each) {
        err = guarded([&] { return apply.each(txn, env); });
      } else {
        one.front() = env;
        err = guarded([&] { return apply.group(txn, one); });
      }
      if (err) return fail_at(i, false, std::move(err), failed);
    }
    return {};
  }
  auto first = std::find_if(batch.begin(), batch.end(), [&](const auto& env) {
    return filter.matches(env);
  });
  if (first == batch.end()) return {};
  auto index = static_cast<size_t>(first - batch.begin());
  // The common case, a filter by stream prefix over a read of those streams
  // only, hands the batch over as it is; otherwise the matching events are
  // copied.
  bool all = std::all_of(first, batch.end(),
                         [&](const auto& env) { return filter.matches(env); });
  persistence::error err;
  if (index == 0 && all) {
    err = guarded([&] { return apply.group(txn, batch); });
  } else {
    envelopes matching;
    std::copy_if(first, batch.end(), std::back_inserter(matching),
                 [&](const auto& env) { return filter.matches(env); });
    err = guarded([&] { return apply.group(txn, matching); });
  }
  if (err) return fail_at(index, true, std::move(err), failed);
  return {};
}

}  // namespace mnemo::actors::detail
