// The .npy file format (NumPy's format.py, versions 1.0 to 3.0): writing a
// header and parsing one, so that numpy.load(path, mmap_mode="r") reads what
// xjob writes and xjob maps what NumPy writes.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace xjob::detail {

// NumPy's dtype string for T on this (little-endian) machine.
template <class T>
constexpr std::string_view npy_descr() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) return "|b1";
  else if constexpr (std::is_same_v<U, std::int8_t>) return "|i1";
  else if constexpr (std::is_same_v<U, std::uint8_t>) return "|u1";
  else if constexpr (std::is_same_v<U, std::int16_t>) return "<i2";
  else if constexpr (std::is_same_v<U, std::uint16_t>) return "<u2";
  else if constexpr (std::is_same_v<U, std::int32_t>) return "<i4";
  else if constexpr (std::is_same_v<U, std::uint32_t>) return "<u4";
  else if constexpr (std::is_same_v<U, std::int64_t> || std::is_same_v<U, long long>) return "<i8";
  else if constexpr (std::is_same_v<U, std::uint64_t> || std::is_same_v<U, unsigned long long>) return "<u8";
  else if constexpr (std::is_same_v<U, float>) return "<f4";
  else if constexpr (std::is_same_v<U, double>) return "<f8";
  else if constexpr (std::is_same_v<U, std::complex<float>>) return "<c8";
  else if constexpr (std::is_same_v<U, std::complex<double>>) return "<c16";
  else return "";
}

template <class T>
inline constexpr bool has_npy_descr_v = !npy_descr<T>().empty();

// The complete header (magic, version, dict, padding) for an array of
// `descr` and `shape` in C order; its size is a multiple of 64 so the data
// that follows is aligned for any SIMD width.
[[nodiscard]] std::string npy_header(std::string_view descr, std::span<std::size_t const> shape);

struct npy_header_info {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::size_t data_offset = 0;
};

// Parses the header at the start of `bytes` (the mapped file). Throws
// xjob::npy_error naming `path` when it is not a valid .npy header.
[[nodiscard]] npy_header_info parse_npy_header(std::filesystem::path const& path,
                                               std::span<std::byte const> bytes);

// Checks a parsed header against the element type and the file length;
// throws xjob::npy_error naming the mismatch.
void check_npy_layout(std::filesystem::path const& path, npy_header_info const& info,
                      std::string_view expected_descr, std::size_t element_bytes, std::size_t file_bytes);

}  // namespace xjob::detail
