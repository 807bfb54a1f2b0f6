// The journal's accessors of its state: the committed head position, the
// sticky failure, the configuration, the format version and map size, and
// the stores that share its environment; also `to_string(durability)` and
// `now_micros`. Each accessor reads what another file owns
// (journal_impl.hpp says which); this file owns no state of its own.

#include "mnemo/persistence/journal.hpp"

#include <chrono>
#include <mutex>

#include "journal_impl.hpp"

namespace mnemo::persistence {

const char* to_string(durability x) noexcept {
  switch (x) {
    case durability::sync:
      return "sync";
    case durability::nometasync:
      return "nometasync";
    case durability::nosync:
      return "nosync";
  }
  return "?";
}

int64_t now_micros() noexcept {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch())
      .count();
}

// -- state --------------------------------------------------------------------

uint64_t journal::head_position() const noexcept {
  if (impl_->cfg.read_only) {
    // Another process may be writing: read the committed head.
    impl_->with_read([this](detail::txn_state& st) {
      MDB_val key = to_val("head");
      MDB_val val;
      if (mdb_get(st.txn, st.dbs->meta, &key, &val) == 0 && val.mv_size == 8)
        impl_->head = get_be64(static_cast<const char*>(val.mv_data));
      return error{};
    });
  }
  return impl_->head.load(std::memory_order_acquire);
}

error journal::failure() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->sticky;
}

const journal_config& journal::config() const noexcept {
  return impl_->cfg;
}

uint64_t journal::format_version() const noexcept {
  return impl_->stored_format;
}

uint64_t journal::map_size() const noexcept {
  return impl_->map_size.load();
}

snapshot_store& journal::snapshots() noexcept {
  return impl_->snapshots;
}

offset_store& journal::offsets() noexcept {
  return impl_->offsets;
}

dead_letter_store& journal::dead_letters() noexcept {
  return impl_->dead_letters;
}

}  // namespace mnemo::persistence
