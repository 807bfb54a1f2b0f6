#pragma once

// Typed read-model tables over `table_store`: order-preserving keys,
// msgpack values, secondary indexes.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/key_codec.hpp"
#include "mnemo/persistence/table_store.hpp"

namespace mnemo::persistence {

namespace detail {

// The error for a stored key or value that does not decode.
inline error decode_error(const std::string& table, std::string_view key,
                          std::string_view what, const std::string& why) {
  return error{errc::decode_failed,
               "table '" + table_store::printable(table) + "', key '" +
                   table_store::printable(key) + "': the " + std::string{what} +
                   " does not decode as the table's " + std::string{what} +
                   " type (" + why +
                   "); the type changed incompatibly or the data is "
                   "damaged: clear and rebuild the read model"};
}

}  // namespace detail

template <class K, class V>
class table;

/// A secondary index of a `table<K, V>`, made by `table::add_index`: maps
/// an index key `IK`, computed from each value, to the primary keys whose
/// values have it (not unique). Kept up to date by the table's `put` and
/// `erase`. Stored as the table `<table>\x01<index>` whose keys are the
/// nested (prefix-free) encoding of `IK` followed by the top-level encoding
/// of `K`, with empty values. Cheap to copy.
template <class IK, class K, class V>
class secondary_index {
 public:
  /// Returns the index name.
  const std::string& name() const noexcept { return name_; }

  /// Returns the primary keys whose value has index key `ik`, in primary
  /// key order, at most `limit`. Errors: `invalid_argument` (bad table or
  /// index name), `decode_failed` (a damaged entry), `storage_error`.
  expected<std::vector<K>> keys(any_txn txn, const IK& ik,
                                size_t limit = table_store::unlimited) const {
    std::vector<K> result;
    auto err = visit(txn, ik, limit, [&](std::string_view, K&& k) {
      result.push_back(std::move(k));
      return error{};
    });
    if (err) return err;
    return result;
  }

  /// Returns (primary key, value) of the rows whose value has index key
  /// `ik`, in primary key order, at most `limit`. Errors: as for `keys`,
  /// plus `decode_failed` for a value that does not decode as `V`, and
  /// `corrupt_record` for an entry whose row is missing.
  expected<std::vector<std::pair<K, V>>> lookup(
      any_txn txn, const IK& ik, size_t limit = table_store::unlimited) const {
    std::vector<std::pair<K, V>> result;
    auto err = visit(txn, ik, limit, [&](std::string_view pk, K&& k) {
      auto raw = table_store::get_in(txn, primary_, pk);
      if (!raw) return std::move(raw).error();
      if (!*raw)
        return error{errc::corrupt_record,
                     "index '" + name_ + "' of table '" + primary_ +
                         "' lists missing key '" + table_store::printable(pk) +
                         "'; clear and rebuild the read model"};
      V v{};
      auto what = detail::unpack_payload(
          reinterpret_cast<const uint8_t*>((*raw)->data()), (*raw)->size(), v);
      if (!what.empty())
        return detail::decode_error(primary_, pk, "value", what);
      result.emplace_back(std::move(k), std::move(v));
      return error{};
    });
    if (err) return err;
    return result;
  }

 private:
  friend class table<K, V>;

  secondary_index(std::string primary, std::string name, error err)
      : primary_(std::move(primary)),
        name_(std::move(name)),
        table_(primary_ + '\x01' + name_),
        err_(std::move(err)) {}

  // Calls `f(primary key bytes, decoded key)` per entry of `ik`.
  template <class F>
  error visit(any_txn txn, const IK& ik, size_t limit, F&& f) const {
    if (err_) return err_;
    std::string prefix;
    key_codec<IK>::encode(ik, prefix, true);
    error err;
    auto res = table_store::scan_prefix_in(
        txn, table_, prefix, limit,
        [&](std::string_view key, std::string_view) {
          auto pk = key.substr(prefix.size());
          K k{};
          if (!decode_key(pk, k))
            err = detail::decode_error(table_, key, "key", "malformed key");
          else
            err = f(pk, std::move(k));
          return !err;
        });
    if (!res) return std::move(res).error();
    return err;
  }

  std::string primary_;
  std::string name_;
  std::string table_;
  error err_;
};

/// A typed read-model table: keys `K` in the order-preserving `key_codec`
/// encoding, values `V` as msgpack (a type with `MSGPACK_DEFINE_MAP`, or
/// any type msgpack-c packs and converts), stored in `table_store` under
/// the table's name. Projections write inside `journal::write` together
/// with `offset_store::store_in`; queries read inside `journal::read`.
///
/// Every write member returns the error of the first step that failed and
/// may have written part of its work (index entries) by then: return that
/// error from the write function, so that its nested transaction is rolled
/// back.
///
/// A table whose name or an index name is invalid (see `table_store`; the
/// name must also not contain the byte 0x01) fails every operation with
/// `invalid_argument`. Thread safety: define all indexes before sharing
/// the table; the const members may then run concurrently.
template <class K, class V>
class table {
 public:
  /// Called per row of a scan in key order; returns whether to go on.
  using visitor = std::function<bool(const K& key, const V& value)>;

  /// The type of a one-element prefix: `K` itself, or the first element
  /// of a pair or tuple key.
  using prefix_type =
      std::tuple_element_t<0, typename detail::key_parts<K>::elements>;

  /// Creates the handle of table `name` (nothing is written).
  explicit table(std::string name) : name_(std::move(name)) {
    err_ = table_store::check_table_name(name_);
    if (!err_ && name_.find('\x01') != std::string::npos)
      err_ = error{errc::invalid_argument,
                   "table name '" + table_store::printable(name_) +
                       "' contains the byte 0x01 (reserved for indexes)"};
  }

  /// Returns the table name.
  const std::string& name() const noexcept { return name_; }

  /// Returns the `invalid_argument` error that every operation fails with
  /// if the table or an index name is invalid, else no error.
  const error& validity() const noexcept { return err_; }

  /// Adds the secondary index `index_name`: `key_of(value)` returns the
  /// index key of a row, or nothing to leave the row out. Call before the
  /// first write; an index added to a table that already holds rows does
  /// not know them (clear and rebuild the read model).
  template <class IK>
  secondary_index<IK, K, V> add_index(
      std::string index_name,
      std::function<std::optional<IK>(const V&)> key_of) {
    error err;
    if (index_name.empty() || index_name.find('\x01') != std::string::npos)
      err = error{errc::invalid_argument,
                  "index name '" + table_store::printable(index_name) +
                      "' of table '" + table_store::printable(name_) +
                      "' is empty or contains the byte 0x01"};
    else
      err = table_store::check_table_name(name_ + '\x01' + index_name);
    if (err && !err_) err_ = err;
    secondary_index<IK, K, V> result{name_, std::move(index_name), err};
    indexes_.push_back(index_def{
        result.table_, [fn = std::move(key_of)](const V& v, std::string& out) {
          auto ik = fn(v);
          if (ik) key_codec<IK>::encode(*ik, out, true);
          return ik.has_value();
        }});
    return result;
  }

  /// Sets row `key` to `value` inside `txn` and updates the indexes (for
  /// which it reads the old value). Errors: `invalid_argument` (invalid
  /// names, encoded key or index entry over the key limit), `encode_failed`,
  /// `decode_failed` (the old value does not decode, so its index entries
  /// are unknown: clear and rebuild), `storage_full`, `storage_error`.
  error put(write_txn& txn, const K& key, const V& value) const {
    if (err_) return err_;
    std::vector<uint8_t> bytes;
    auto what = detail::pack_payload(value, bytes);
    auto k = encode_key(key);
    if (!what.empty())
      return error{errc::encode_failed,
                   "table '" + name_ + "', key '" + table_store::printable(k) +
                       "': cannot encode the value: " + what};
    if (!indexes_.empty()) {
      std::optional<V> old;
      if (auto err = load(txn, k, old)) return err;
      if (auto err =
              update_indexes(txn, k, index_keys(old ? &*old : nullptr), &value))
        return err;
    }
    std::string_view view{reinterpret_cast<const char*>(bytes.data()),
                          bytes.size()};
    return table_store::put_in(txn, name_, k, view);
  }

  /// Reads row `key` (an empty optional if there is none), lets
  /// `change(std::optional<V>&)` edit it, then stores the result inside
  /// `txn` and updates the indexes: the edited value, or no row if
  /// `change` left the optional empty. The row is read and decoded once,
  /// where `get` followed by `put` on an indexed table does it twice.
  /// `change` must not use this table in `txn`. Errors: as for `put`; on
  /// an error `change` may not have run.
  template <class F>
  error update(write_txn& txn, const K& key, F&& change) const {
    if (err_) return err_;
    auto k = encode_key(key);
    std::optional<V> row;
    if (auto err = load(txn, k, row)) return err;
    auto existed = row.has_value();
    auto before = index_keys(row ? &*row : nullptr);
    change(row);
    if (auto err =
            update_indexes(txn, k, std::move(before), row ? &*row : nullptr))
      return err;
    if (!row) {
      if (!existed) return {};
      auto res = table_store::erase_in(txn, name_, k);
      return res ? error{} : std::move(res).error();
    }
    std::vector<uint8_t> bytes;
    auto what = detail::pack_payload(*row, bytes);
    if (!what.empty())
      return error{errc::encode_failed,
                   "table '" + name_ + "', key '" + table_store::printable(k) +
                       "': cannot encode the value: " + what};
    std::string_view view{reinterpret_cast<const char*>(bytes.data()),
                          bytes.size()};
    return table_store::put_in(txn, name_, k, view);
  }

  /// Returns row `key`, or nothing. Errors: `invalid_argument`,
  /// `decode_failed` naming table and key, `storage_error`.
  expected<std::optional<V>> get(any_txn txn, const K& key) const {
    if (err_) return err_;
    std::optional<V> result;
    if (auto err = load(txn, encode_key(key), result)) return err;
    return result;
  }

  /// Deletes row `key` and its index entries inside `txn`; returns whether
  /// it existed. Errors: as for `put`.
  expected<bool> erase(write_txn& txn, const K& key) const {
    if (err_) return err_;
    auto k = encode_key(key);
    if (!indexes_.empty()) {
      std::optional<V> old;
      if (auto err = load(txn, k, old)) return err;
      if (!old) return false;
      if (auto err = update_indexes(txn, k, index_keys(&*old), nullptr))
        return err;
    }
    return table_store::erase_in(txn, name_, k);
  }

  /// Calls `fn` for at most `limit` rows in key order, until `fn`
  /// returns false: for a pair or tuple key the rows whose first element
  /// equals `prefix` (("a", 1) but not ("ab", 1) for "a"); for a string key
  /// the rows whose key starts with `prefix` ("a", "ab"; "" for all); for
  /// an integer key the row `prefix`. Returns the number of rows visited.
  /// Errors: `invalid_argument`, `decode_failed` naming table and key,
  /// `storage_error`.
  expected<size_t> scan_prefix(any_txn txn, const prefix_type& prefix,
                               size_t limit, const visitor& fn) const {
    std::string p;
    key_codec<prefix_type>::encode(prefix, p, detail::key_parts<K>::composite);
    return scan(txn, p, {}, true, limit, fn);
  }

  /// `scan_prefix` by the leading elements of a tuple or pair key (each
  /// equal), e.g.
  /// `std::tuple<std::string, int>{"a", 1}` for a key
  /// `std::tuple<std::string, int, std::string>`.
  template <class... Ps>
  expected<size_t> scan_prefix(any_txn txn, const std::tuple<Ps...>& prefix,
                               size_t limit, const visitor& fn) const {
    static_assert(
        detail::key_parts<K>::composite &&
            detail::is_leading<std::tuple<Ps...>,
                               typename detail::key_parts<K>::elements>::value,
        "the prefix must hold the leading element types of K");
    std::string p;
    key_codec<std::tuple<Ps...>>::encode(prefix, p, true);
    return scan(txn, p, {}, true, limit, fn);
  }

  /// Calls `fn` for at most `limit` rows with `from <= key < to` in key
  /// order, until `fn` returns false; a missing bound is open. Returns the
  /// number of rows visited. Errors: as for `scan_prefix`.
  expected<size_t> range(any_txn txn, const std::optional<K>& from,
                         const std::optional<K>& to, size_t limit,
                         const visitor& fn) const {
    auto f = from ? encode_key(*from) : std::string{};
    auto t = to ? encode_key(*to) : std::string{};
    // An empty encoding as the upper bound is below every key.
    if (to && t.empty()) return size_t{0};
    return scan(txn, f, t, false, limit, fn);
  }

  /// Returns the number of rows (walks them: O(n)). Errors:
  /// `invalid_argument`, `storage_error`.
  expected<uint64_t> count(any_txn txn) const {
    if (err_) return err_;
    return table_store::count_in(txn, name_);
  }

  /// Deletes every row and index entry inside `txn` (see
  /// `table_store::clear_in` for large tables); returns the number of rows
  /// deleted. Errors: `invalid_argument`, `storage_full`, `storage_error`.
  expected<uint64_t> clear(write_txn& txn) const {
    if (err_) return err_;
    for (auto& def : indexes_)
      if (auto res = table_store::clear_in(txn, def.table); !res)
        return std::move(res).error();
    return table_store::clear_in(txn, name_);
  }

 private:
  struct index_def {
    std::string table;
    // Appends the nested encoding of the row's index key; false if none.
    std::function<bool(const V&, std::string&)> encode;
  };

  error load(any_txn txn, std::string_view k, std::optional<V>& out) const {
    auto raw = table_store::get_in(txn, name_, k);
    if (!raw) return std::move(raw).error();
    if (!*raw) return {};
    auto& bytes = **raw;
    auto what =
        detail::unpack_payload(reinterpret_cast<const uint8_t*>(bytes.data()),
                               bytes.size(), out.emplace());
    if (what.empty()) return {};
    out.reset();
    return detail::decode_error(name_, k, "value", what);
  }

  // The encoded index key of `row` per index (none if the index leaves
  // the row out, or for no row).
  std::vector<std::optional<std::string>> index_keys(const V* row) const {
    std::vector<std::optional<std::string>> keys(indexes_.size());
    if (row == nullptr) return keys;
    for (size_t i = 0; i < indexes_.size(); ++i) {
      std::string key;
      if (indexes_[i].encode(*row, key)) keys[i] = std::move(key);
    }
    return keys;
  }

  // Moves the index entries of row `k` from the keys `old` (of
  // `index_keys`) to those of `now`.
  error update_indexes(write_txn& txn, const std::string& k,
                       std::vector<std::optional<std::string>> old,
                       const V* now) const {
    for (size_t i = 0; i < indexes_.size(); ++i) {
      auto& def = indexes_[i];
      std::string after;
      bool had = old[i].has_value();
      bool has = now != nullptr && def.encode(*now, after);
      if (had && has && *old[i] == after) continue;
      if (had) {
        auto res = table_store::erase_in(txn, def.table, *old[i] + k);
        if (!res) return std::move(res).error();
      }
      if (has)
        if (auto err = table_store::put_in(txn, def.table, after + k, {}))
          return err;
    }
    return {};
  }

  expected<size_t> scan(any_txn txn, const std::string& from,
                        const std::string& to, bool prefix, size_t limit,
                        const visitor& fn) const {
    if (err_) return err_;
    error err;
    auto each = [&](std::string_view key, std::string_view value) {
      K k{};
      V v{};
      if (!decode_key(key, k)) {
        err = detail::decode_error(name_, key, "key", "malformed key");
        return false;
      }
      auto what = detail::unpack_payload(
          reinterpret_cast<const uint8_t*>(value.data()), value.size(), v);
      if (!what.empty()) {
        err = detail::decode_error(name_, key, "value", what);
        return false;
      }
      return fn(k, v);
    };
    auto res = prefix
                   ? table_store::scan_prefix_in(txn, name_, from, limit, each)
                   : table_store::scan_in(txn, name_, from, to, limit, each);
    if (err) return err;
    return res;
  }

  std::string name_;
  error err_;
  std::vector<index_def> indexes_;
};

}  // namespace mnemo::persistence
