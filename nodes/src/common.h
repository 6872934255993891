/* Helpers shared by the built-in C nodes: params, image layouts and a plain bilinear resize. */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../custom_node_interface.h"

#define NODE_ASSERT(cond, msg)                                   \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "[%s] %s\n", NODE_NAME, (msg));      \
            return 1;                                            \
        }                                                        \
    } while (0)

static inline const char* get_string_param(const struct CustomNodeParam* params, int count, const char* key, const char* fallback) {
    for (int i = 0; i < count; i++)
        if (strcmp(params[i].key, key) == 0) return params[i].value;
    return fallback;
}

static inline int get_int_param(const struct CustomNodeParam* params, int count, const char* key, int fallback) {
    const char* value = get_string_param(params, count, key, NULL);
    return value ? atoi(value) : fallback;
}

static inline float get_float_param(const struct CustomNodeParam* params, int count, const char* key, float fallback) {
    const char* value = get_string_param(params, count, key, NULL);
    return value ? (float)atof(value) : fallback;
}

/* "[1.0, 2, 3]" or "1,2,3" -> values; returns how many were read (at most max), 0 when absent. */
static inline int get_float_list_param(const struct CustomNodeParam* params, int count, const char* key, float* out, int max) {
    const char* value = get_string_param(params, count, key, NULL);
    int n = 0;
    if (value == NULL) return 0;
    const char* p = value;
    while (*p && n < max) {
        while (*p == '[' || *p == ' ' || *p == ',') p++;
        if (*p == ']' || *p == 0) break;
        char* end;
        float v = strtof(p, &end);
        if (end == p) return -1;
        out[n++] = v;
        p = end;
    }
    return n;
}

/* NCHW/CHW -> 1, NHWC/HWC -> 0, else -1. */
static inline int is_nchw(const char* layout) {
    if (strcmp(layout, "NCHW") == 0 || strcmp(layout, "CHW") == 0) return 1;
    if (strcmp(layout, "NHWC") == 0 || strcmp(layout, "HWC") == 0) return 0;
    return -1;
}

/* Planar CHW <-> interleaved HWC. */
static inline void chw_to_hwc(const float* src, float* dst, int c, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) dst[(y * w + x) * c + k] = src[(k * h + y) * w + x];
}

static inline void hwc_to_chw(const float* src, float* dst, int c, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) dst[(k * h + y) * w + x] = src[(y * w + x) * c + k];
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Bilinear resize of the region (rx, ry, rw, rh) of an HWC image of width sw to dw x dh, with
 * OpenCV's INTER_LINEAR pixel-centre convention. */
static inline void resize_roi(const float* src, int sw, int c, int rx, int ry, int rw, int rh, float* dst, int dw, int dh) {
    float sx = (float)rw / dw, sy = (float)rh / dh;
    for (int y = 0; y < dh; y++) {
        float fy = clampf((y + 0.5f) * sy - 0.5f, 0, rh - 1);
        int y0 = (int)fy, y1 = y0 + 1 < rh ? y0 + 1 : y0;
        float wy = fy - y0;
        for (int x = 0; x < dw; x++) {
            float fx = clampf((x + 0.5f) * sx - 0.5f, 0, rw - 1);
            int x0 = (int)fx, x1 = x0 + 1 < rw ? x0 + 1 : x0;
            float wx = fx - x0;
            const float* p00 = src + ((ry + y0) * sw + rx + x0) * c;
            const float* p01 = src + ((ry + y0) * sw + rx + x1) * c;
            const float* p10 = src + ((ry + y1) * sw + rx + x0) * c;
            const float* p11 = src + ((ry + y1) * sw + rx + x1) * c;
            for (int k = 0; k < c; k++)
                dst[(y * dw + x) * c + k] = (1 - wy) * ((1 - wx) * p00[k] + wx * p01[k]) + wy * ((1 - wx) * p10[k] + wx * p11[k]);
        }
    }
}

/* Interleaved BGR -> gray with OpenCV's weights (0.114 B + 0.587 G + 0.299 R). */
static inline void bgr_to_gray(const float* src, float* dst, int pixels, int rgb) {
    for (int i = 0; i < pixels; i++) {
        const float* p = src + i * 3;
        float b = rgb ? p[2] : p[0], r = rgb ? p[0] : p[2];
        dst[i] = 0.114f * b + 0.587f * p[1] + 0.299f * r;
    }
}

static inline struct CustomNodeTensorInfo* new_infos(int count) {
    return (struct CustomNodeTensorInfo*)calloc(count, sizeof(struct CustomNodeTensorInfo));
}

static inline void set_info(struct CustomNodeTensorInfo* info, const char* name, CustomNodeTensorPrecision precision,
                            int dimsCount, const uint64_t* dims) {
    info->name = name;
    info->precision = precision;
    info->dimsCount = dimsCount;
    info->dims = (uint64_t*)malloc(dimsCount * sizeof(uint64_t));
    memcpy(info->dims, dims, dimsCount * sizeof(uint64_t));
}

/* An output with malloc'ed dims and data (at least 1 byte, so a zero-size tensor is never NULL). */
static inline void* set_output(struct CustomNodeTensor* out, const char* name, CustomNodeTensorPrecision precision,
                               size_t elemSize, int dimsCount, const uint64_t* dims) {
    uint64_t elements = 1;
    for (int i = 0; i < dimsCount; i++) elements *= dims[i];
    out->name = name;
    out->precision = precision;
    out->dimsCount = dimsCount;
    out->dims = (uint64_t*)malloc(dimsCount * sizeof(uint64_t));
    memcpy(out->dims, dims, dimsCount * sizeof(uint64_t));
    out->dataBytes = elements * elemSize;
    out->data = (uint8_t*)calloc(out->dataBytes ? out->dataBytes : 1, 1);
    return out->data;
}

static inline const struct CustomNodeTensor* find_input(const struct CustomNodeTensor* inputs, int count, const char* name) {
    for (int i = 0; i < count; i++)
        if (strcmp(inputs[i].name, name) == 0) return &inputs[i];
    return NULL;
}

/* Nodes without state accept any manager and free with free(). */
#define STATELESS_NODE                                                                                  \
    int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; } \
    int deinitialize(void* manager) { return 0; }                                                       \
    int release(void* ptr, void* manager) {                                                             \
        free(ptr);                                                                                      \
        return 0;                                                                                       \
    }
