/*
 * The dd planner: img_dd()'s copy loop over the block layer.  Every block
 * is read with gbs_pread() (blk_pread) and written with gbs_pwrite()
 * (blk_pwrite), zeros included: qemu-img dd detects nothing, so a raw
 * output ends up fully written and a qcow2 output fully allocated.
 */
#include "bdrv.h"

void plan_dd(void)
{
    static struct instar_dd_args a;
    struct gbs *src, *dst;
    uint64_t in_pos, out_pos = 0, at = 0;
    uint32_t status = INSTAR_DATA_OK;
    uint8_t *buf;
    int ret = 0;

    a = boot->args.dd;
    if (a.bs == 0 || a.bs > 0x7fffffffu || a.start >= a.end)
        result_error(INSTAR_OP_DD, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    gbs_open_or_fail(INSTAR_OP_DD, &a.g);
    src = gbs_node(a.src);
    dst = gbs_node(a.dst);
    if (!src || !dst || src == dst || !dst->writable)
        result_error(INSTAR_OP_DD, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    buf = malloc((size_t)a.bs);
    if (!buf)
        result_error(INSTAR_OP_DD, INSTAR_ERR_NOMEM, NULL, NULL, 0);

    for (in_pos = a.start; in_pos < a.end;) {
        size_t bytes = a.end - in_pos < a.bs ? (size_t)(a.end - in_pos) : (size_t)a.bs;

        ret = gbs_pread(src, in_pos, buf, bytes);
        if (ret < 0) {
            status = INSTAR_DATA_EREAD_AT;
            at = in_pos;
            break;
        }
        in_pos += bytes;
        ret = gbs_pwrite(dst, out_pos, buf, bytes);
        if (ret < 0) {
            status = INSTAR_DATA_EWRITE_AT;
            at = out_pos;
            break;
        }
        out_pos += bytes;
    }
    /* blk_unref(), after a failure too: the output's cached metadata reaches the file. */
    {
        int r = gbs_flush(dst);

        if (r == 0)
            r = gbs_close(dst);

        if (r < 0 && status == INSTAR_DATA_OK) {
            status = INSTAR_DATA_EWRITE_AT;
            ret = r;
            at = out_pos;
        }
    }
    gbs_send(INSTAR_OP_DD, status, status == INSTAR_DATA_OK ? 0 : (uint32_t)-ret, at, 0, 0);
}
