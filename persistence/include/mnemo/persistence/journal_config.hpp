#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <string>

namespace mnemo::persistence {

/// How hard a group commit pushes data to disk.
enum class durability {
  /// fsync data and meta page on every group commit (default). An
  /// acknowledged append survives kill -9 and power loss.
  sync,
  /// fsync data but not the meta page (LMDB's MDB_NOMETASYNC): a power cut
  /// may lose the last commit, never corrupt the database.
  nometasync,
  /// No fsync (MDB_NOSYNC): survives a process crash, not a power cut.
  nosync,
};

/// Returns "sync", "nometasync" or "nosync".
const char* to_string(durability x) noexcept;

/// Settings of one journal (one data directory).
class replication_gate;

struct journal_config {
  /// Data directory; created (one level) if missing, unless `read_only`.
  std::string directory;
  /// Durability mode. Default: `durability::sync`.
  durability mode = durability::sync;
  /// Initial size of the memory map in bytes. Default: 64 MiB. The map
  /// grows (doubling) when LMDB reports MDB_MAP_FULL.
  uint64_t initial_map_size = uint64_t{64} << 20;
  /// Upper bound for map growth in bytes; a request that does not fit below
  /// it fails alone with `errc::storage_full` (the rest of its group commit
  /// is written). Default: 1 TiB (address space, not disk).
  uint64_t max_map_size = uint64_t{1} << 40;
  /// Most requests drained into one group commit. Default: 8192.
  size_t max_batch_requests = 8192;
  /// Open without a writer (for inspection tools). Default: false.
  bool read_only = false;
  /// Maximum concurrent read transactions (LMDB readers). Default: 126.
  unsigned max_readers = 126;
  /// Replicated cluster (docs/replication.md): the shard whose log an
  /// appended stream's events join, or nothing for a stream that no shard
  /// replicates. Called on the appending thread; must give a stream the
  /// same answer for the journal's whole life. Default: none (no shard
  /// logs; a journal of the embedded node or of the static cluster).
  std::function<std::optional<uint32_t>(std::string_view stream)> shard_of;
  /// Replicated cluster: decides when an append to a shard's stream is
  /// acknowledged (replica_log.hpp). Without one, an append is
  /// acknowledged once it is durable here, as in every other journal.
  std::shared_ptr<replication_gate> gate;
  /// Replicated cluster: the largest record (event or snapshot, header
  /// included) a shard's log may take, since each one travels to the other
  /// replicas in one message (the nodes set it from the cluster's
  /// `max_message_bytes`). An append to a shard's stream with a larger
  /// event fails with `invalid_argument`, writing nothing; a larger
  /// snapshot of a shard's stream is stored here only (it is a cache; the
  /// next leader recovers from events). 0: no limit. Default: 0.
  size_t max_shard_record_bytes = 0;
};

}  // namespace mnemo::persistence
