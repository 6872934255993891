/* Built-in image_transformation, with OVMS's params: image FP32 [1,C,H,W] or [1,H,W,C] (C 1 or 3,
 * any size) -> image FP32 in the target layout, size, colour order, minus mean_values, divided by
 * scale_values (or by scale). Resize is plain bilinear. */
#define NODE_NAME "image_transformation"
#include "common.h"

STATELESS_NODE

struct settings {
    int nchw_in, nchw_out, width, height; /* width/height -1: keep the original */
    const char *color_in, *color_out;
    int channels_out, means, scales;
    float mean[3], scale[3];
};

static int channels_of(const char* order) {
    if (strcmp(order, "GRAY") == 0) return 1;
    if (strcmp(order, "BGR") == 0 || strcmp(order, "RGB") == 0) return 3;
    return -1;
}

static int read_settings(struct settings* s, const struct CustomNodeParam* params, int count) {
    const char* layout_in = get_string_param(params, count, "original_image_layout", "");
    s->nchw_in = is_nchw(layout_in);
    s->nchw_out = is_nchw(get_string_param(params, count, "target_image_layout", layout_in));
    NODE_ASSERT(s->nchw_in >= 0 && s->nchw_out >= 0, "original_image_layout (required) and target_image_layout must be NCHW or NHWC");
    s->width = get_int_param(params, count, "target_image_width", -1);
    s->height = get_int_param(params, count, "target_image_height", -1);
    NODE_ASSERT(s->width == -1 || s->width > 0, "target_image_width, when given, must be larger than 0");
    NODE_ASSERT(s->height == -1 || s->height > 0, "target_image_height, when given, must be larger than 0");
    s->color_in = get_string_param(params, count, "original_image_color_order", "BGR");
    s->color_out = get_string_param(params, count, "target_image_color_order", s->color_in);
    NODE_ASSERT(channels_of(s->color_in) > 0 && channels_of(s->color_out) > 0, "color orders must be BGR, RGB or GRAY");
    s->channels_out = channels_of(s->color_out);
    s->means = get_float_list_param(params, count, "mean_values", s->mean, 3);
    s->scales = get_float_list_param(params, count, "scale_values", s->scale, 3);
    NODE_ASSERT(s->means == 0 || s->means == s->channels_out, "mean_values needs one value per target channel");
    NODE_ASSERT(s->scales == 0 || s->scales == s->channels_out, "scale_values needs one value per target channel");
    if (s->scales == 0 && get_string_param(params, count, "scale", NULL) != NULL) {
        s->scales = s->channels_out;
        for (int k = 0; k < 3; k++) s->scale[k] = get_float_param(params, count, "scale", 1);
    }
    for (int k = 0; k < s->scales; k++) NODE_ASSERT(s->scale[k] != 0, "scale values must not be 0");
    return 0;
}

/* Interleaved colour conversion; returns a new buffer of h*w*channels_out floats. */
static float* convert_color(const float* src, int pixels, const struct settings* s) {
    int cin = channels_of(s->color_in), cout = s->channels_out;
    float* dst = (float*)malloc((size_t)pixels * cout * sizeof(float));
    if (cin == 3 && cout == 1) {
        bgr_to_gray(src, dst, pixels, strcmp(s->color_in, "RGB") == 0);
    } else if (cin == 1 && cout == 3) {
        for (int i = 0; i < pixels; i++) dst[i * 3] = dst[i * 3 + 1] = dst[i * 3 + 2] = src[i];
    } else if (cin == 3 && strcmp(s->color_in, s->color_out) != 0) {
        for (int i = 0; i < pixels; i++) {
            dst[i * 3] = src[i * 3 + 2];
            dst[i * 3 + 1] = src[i * 3 + 1];
            dst[i * 3 + 2] = src[i * 3];
        }
    } else {
        memcpy(dst, src, (size_t)pixels * cout * sizeof(float));
    }
    return dst;
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct settings s;
    if (read_settings(&s, params, paramsCount)) return 1;
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "image");
    NODE_ASSERT(inputsCount == 1 && in != NULL, "expected exactly one input, image");
    NODE_ASSERT(in->precision == FP32 && in->dimsCount == 4 && in->dims[0] == 1, "image must be FP32 with shape [1,C,H,W] or [1,H,W,C]");
    int c = (int)in->dims[s.nchw_in ? 1 : 3], h = (int)in->dims[s.nchw_in ? 2 : 1], w = (int)in->dims[s.nchw_in ? 3 : 2];
    NODE_ASSERT(h > 0 && w > 0, "image size must be positive");
    NODE_ASSERT(c == channels_of(s.color_in), "image channels do not match original_image_color_order (GRAY: 1, BGR/RGB: 3)");
    int tw = s.width > 0 ? s.width : w, th = s.height > 0 ? s.height : h, tc = s.channels_out;

    float* hwc = (float*)malloc((size_t)h * w * c * sizeof(float));
    if (s.nchw_in) chw_to_hwc((const float*)in->data, hwc, c, h, w);
    else memcpy(hwc, in->data, (size_t)h * w * c * sizeof(float));
    float* colored = convert_color(hwc, h * w, &s);
    free(hwc);
    float* resized = colored;
    if (tw != w || th != h) {
        resized = (float*)malloc((size_t)th * tw * tc * sizeof(float));
        resize_roi(colored, w, tc, 0, 0, w, h, resized, tw, th);
        free(colored);
    }
    for (int i = 0; i < th * tw; i++)
        for (int k = 0; k < tc; k++) {
            float* v = &resized[i * tc + k];
            if (s.means) *v -= s.mean[k];
            if (s.scales) *v /= s.scale[k];
        }

    uint64_t dims_nchw[] = {1, (uint64_t)tc, (uint64_t)th, (uint64_t)tw}, dims_nhwc[] = {1, (uint64_t)th, (uint64_t)tw, (uint64_t)tc};
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)calloc(1, sizeof(struct CustomNodeTensor));
    float* out = (float*)set_output(*outputs, "image", FP32, sizeof(float), 4, s.nchw_out ? dims_nchw : dims_nhwc);
    if (s.nchw_out) hwc_to_chw(resized, out, tc, th, tw);
    else memcpy(out, resized, (size_t)th * tw * tc * sizeof(float));
    free(resized);
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0, 0, 0};
    *infoCount = 1;
    *info = new_infos(1);
    set_info(*info, "image", FP32, 4, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct settings s;
    if (read_settings(&s, params, paramsCount)) return 1;
    uint64_t c = s.channels_out, h = s.height > 0 ? s.height : 0, w = s.width > 0 ? s.width : 0;
    uint64_t dims_nchw[] = {1, c, h, w}, dims_nhwc[] = {1, h, w, c};
    *infoCount = 1;
    *info = new_infos(1);
    set_info(*info, "image", FP32, 4, s.nchw_out ? dims_nchw : dims_nhwc);
    return 0;
}
