#include "mnemo/runtime/stream_shards.hpp"

#include <algorithm>
#include <mutex>

#include "mnemo/runtime/cluster_view.hpp"

namespace mnemo::runtime {

void stream_shards::add(const std::string& prefix, const std::string& type) {
  std::unique_lock<std::shared_mutex> guard{mtx_};
  for (auto& [p, t] : prefixes_)
    if (p == prefix) return;
  prefixes_.emplace_back(prefix, type);
  std::stable_sort(prefixes_.begin(), prefixes_.end(), [](auto& x, auto& y) {
    return x.first.size() > y.first.size();
  });
}

std::optional<uint32_t> stream_shards::shard_of(std::string_view stream) const {
  std::shared_lock<std::shared_mutex> guard{mtx_};
  for (auto& [prefix, type] : prefixes_)
    if (stream.size() > prefix.size() &&
        stream.compare(0, prefix.size(), prefix) == 0)
      return entity_shard(type, stream.substr(prefix.size()), shards_);
  return std::nullopt;
}

}  // namespace mnemo::runtime
